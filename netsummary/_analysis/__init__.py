"""Analysis: from the tracer's calls to exact figures.

``records`` freezes the calls into LayerRecords; ``count`` counts unique parameters and buffers;
``flops`` counts MACs while the forward runs; ``formula`` explains a layer's parameter count.
"""
