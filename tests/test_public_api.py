"""The public surface is exactly what __all__ names."""

import netsummary


def test_all_is_the_public_surface():
    public = {n for n in dir(netsummary) if not n.startswith("_")} | {"__version__"}
    assert set(netsummary.__all__) == public - {"annotations"}


def test_version_matches_package_metadata():
    from importlib.metadata import version

    assert netsummary.__version__ == version("netsummary")
