"""Mixture of experts (netsummary._analysis.experts): routed-expert and active parameters, measured
on real runs, from the router's top-k on meta, from the config without a forward; grouped-matmul
MACs of transformers' experts; meta summaries of float32 MoE models."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from netsummary import ForwardError, Summary, summary


class Expert(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 8)  # 8*16+16 + 16*8+8 = 280 params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


class TopKMoE(nn.Module):
    """A hand-written top-k router: each token goes to its k best experts (no capacity limit) or,
    with ``capacity``, to at most ``capacity`` tokens per expert (the rest are dropped)."""

    def __init__(self, k: int = 2, capacity: int | None = None) -> None:
        super().__init__()
        self.top_k, self.capacity = k, capacity
        self.gate = nn.Linear(8, 4)  # 8*4 + 4 = 36 params
        self.experts = nn.ModuleList([Expert() for _ in range(4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        weights, chosen = torch.topk(self.gate(tokens).softmax(-1), self.top_k, dim=-1)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.where(chosen == e)
            if self.capacity is not None:
                rows, slot = rows[: self.capacity], slot[: self.capacity]
            if rows.numel():
                out[rows] += weights[rows, slot, None] * expert(tokens[rows])
        return out.reshape(x.shape)


def test_hand_written_top2_router_active_params_measured() -> None:
    torch.manual_seed(0)
    m = TopKMoE(k=2)
    s = summary(m, (16, 8), batch_size=1, verbose=0)
    assert s.total_params == sum(p.numel() for p in m.parameters()) == 36 + 4 * 280  # 1,156
    assert s.expert_params == 4 * 280  # 1,120
    # every token goes to 2 of the 4 experts: shared 36 + 2 * 280 = 596 (= 36 + 2/4 of 1,120)
    assert (s.active_params, s.active_params_method) == (596, "measured")
    assert "Active params per token: 596 of 1,156 (51.56%; measured: tokens each expert processed" in str(s)
    # no forward: k = the block's top_k attribute, 36 + 2/4 of 1,120 = 596
    s = summary(m, verbose=0)
    assert (s.active_params, s.active_params_method) == (596, "config")


def test_dropped_tokens_exact() -> None:
    class Fixed(TopKMoE):  # token i -> expert i % 4, 4 tokens each, capacity 2: 8 of 16 processed
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = x.reshape(-1, 8)
            self.gate(tokens)
            chosen = torch.arange(tokens.shape[0]) % 4
            out = torch.zeros_like(tokens)
            for e, expert in enumerate(self.experts):
                rows = torch.where(chosen == e)[0][: self.capacity]
                out[rows] = expert(tokens[rows])
            return out.reshape(x.shape)

    s = summary(Fixed(k=1, capacity=2), (16, 8), batch_size=1, verbose=0)
    assert s.active_params == 36 + 280 // 2  # 36 + 280 * 8 / 16 = 176
    assert s.active_params_method == "measured"


def test_listed_experts_of_different_sizes_weigh_each_experts_rows() -> None:
    class Sized(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.up, self.down = nn.Linear(8, width), nn.Linear(width, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down(self.up(x))

    class Uneven(nn.Module):  # tokens 0-2 -> the small expert, token 3 -> the large one (top-1)
        def __init__(self) -> None:
            super().__init__()
            self.gate = nn.Linear(8, 2)  # 8*2 + 2 = 18
            self.experts = nn.ModuleList([Sized(4), Sized(16)])  # 8*4+4 + 4*8+8 = 76; 280

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.gate(x)
            return torch.cat([self.experts[0](x[:3]), self.experts[1](x[3:])])

    s = summary(Uneven(), (8,), batch_size=4, verbose=0)
    # 18 + (3 rows * 76 + 1 row * 280) / 4 tokens = 18 + 508 / 4 = 145
    assert (s.total_params, s.expert_params, s.active_params) == (374, 356, 145)


def test_hand_written_router_on_meta_is_a_clear_error() -> None:
    with torch.device("meta"):
        m = TopKMoE()
    before = {k: (v.shape, v.dtype) for k, v in m.state_dict().items()}
    with pytest.raises(ForwardError, match=r"mixture-of-experts routing picks each expert's tokens by value.*"
                                           r"summarize on a real device \(device=\"cpu\"\)"):
        summary(m, (16, 8), verbose=0)
    assert {k: (v.shape, v.dtype) for k, v in m.state_dict().items()} == before


def test_ordinary_model_has_no_moe_fields_and_unchanged_json() -> None:
    s = summary(nn.Sequential(nn.Linear(4, 4), nn.ModuleList([nn.Linear(4, 4)])), verbose=0)
    assert (s.expert_params, s.active_params, s.active_params_method, s.adapters) == (None, None, None, ())
    d = s.to_dict()
    assert not {"expert_params", "active_params", "active_params_method", "adapters"} & set(d)
    assert "Active" not in str(s) and "Active" not in s.render("tree")


def test_moe_fields_round_trip_through_json() -> None:
    torch.manual_seed(0)
    s = summary(TopKMoE(), (16, 8), batch_size=1, verbose=0)
    d = s.to_dict()
    assert (d["expert_params"], d["active_params"], d["active_params_method"]) == (1120, 596, "measured")
    assert Summary.from_json(s.to_json()) == s
    from netsummary import InputSpecError

    with pytest.raises(InputSpecError, match="active_params_method is 'guessed'"):
        Summary.from_dict({**d, "active_params_method": "guessed"})
    with pytest.raises(InputSpecError, match=r"active_params is -1 \(int\), expected an int >= 0"):
        Summary.from_dict({**d, "active_params": -1})


# --- transformers v5 experts (torch._grouped_mm) -------------------------------------------------

def _quiet_transformers():
    transformers = pytest.importorskip("transformers")
    warnings.filterwarnings("ignore")
    return transformers


def _small_mixtral():
    tf = _quiet_transformers()
    # hidden 32, intermediate 64, 2 layers, 4 heads (head dim 8), 2 kv heads, 4 experts, top-2
    return tf.MixtralConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                            num_experts_per_tok=2, max_position_embeddings=64), tf.MixtralForCausalLM


# Per layer: attention q 32*32 + k 32*16 + v 32*16 + o 32*32 = 3,072; two RMSNorms 64; router
# 4*32 = 128; experts 4 * (gate_up 2*64*32 + down 32*64) = 4 * 6,144 = 24,576: 27,840 per layer.
# Total: 2 * 27,840 + embeddings 100*32 + final norm 32 + lm_head 32*100 = 62,112.
# Routed experts 2 * 24,576 = 49,152; shared 62,112 - 49,152 = 12,960;
# active = shared + 2/4 of the experts = 12,960 + 24,576 = 37,536.
# MACs at 16 tokens, batch 1, per layer: projections 16 * 3,072 = 49,152; attention
# B*H*L*S*(E+Ev) = 4*16*16*16 = 16,384; router 16 * 128 = 2,048; experts 16 tokens * 2 * 6,144
# = 196,608 (the grouped matmuls: 32 rows * 32 * 128 + 32 rows * 64 * 32): 264,192 per layer;
# 2 * 264,192 + lm_head 16 * 3,200 = 51,200 -> 579,584.
MIXTRAL_TOTAL, MIXTRAL_EXPERTS, MIXTRAL_ACTIVE, MIXTRAL_MACS = 62_112, 49_152, 37_536, 579_584


@pytest.mark.zoo
def test_small_mixtral_on_cpu_measured_and_on_meta_float32() -> None:
    cfg, cls = _small_mixtral()
    torch.manual_seed(0)
    m = cls(cfg)
    s = summary(m, (16,), dtypes=[torch.long], batch_size=1, macs=True, verbose=0)
    assert s.total_params == sum(p.numel() for p in m.parameters()) == MIXTRAL_TOTAL
    assert s.expert_params == sum(p.numel() for n, p in m.named_parameters() if ".experts." in n) == MIXTRAL_EXPERTS
    assert (s.active_params, s.active_params_method) == (MIXTRAL_ACTIVE, "measured")
    assert (s.total_macs, s.unknown_ops) == (MIXTRAL_MACS, ())
    experts = next(r for r in s.layers if r.name == "model.layers.0.mlp.experts")
    assert experts.macs == 196_608

    with torch.device("meta"):
        mm = cls(cfg)  # float32 on meta: the grouped matmul runs on a bf16 stand-in
    sm = summary(mm, (16,), dtypes=[torch.long], batch_size=1, macs=True, verbose=0)
    assert (sm.total_params, sm.expert_params, sm.total_macs) == (MIXTRAL_TOTAL, MIXTRAL_EXPERTS, MIXTRAL_MACS)
    assert (sm.active_params, sm.active_params_method) == (MIXTRAL_ACTIVE, "top-k")
    assert sm.param_bytes == 4 * MIXTRAL_TOTAL  # float32 reported, not the stand-in's bf16
    assert [r.output_shapes for r in sm.layers] == [r.output_shapes for r in s.layers]
    assert next(r for r in sm.layers if r.name == "model.layers.0.mlp.experts").output_dtypes == ("float32",)
    # no forward: k from the config
    assert (summary(mm, verbose=0).active_params, summary(mm, verbose=0).active_params_method) == (MIXTRAL_ACTIVE, "config")
    assert "Active params per token (router top-k, on meta)  37,536 (60.43%)" in sm.render("tree", depth=0)


@pytest.mark.zoo
def test_eager_experts_on_meta_name_the_workaround() -> None:
    cfg, cls = _small_mixtral()
    with torch.device("meta"):
        m = cls(cfg)
    m.set_experts_implementation("eager")
    with pytest.raises(ForwardError, match=r'model.set_experts_implementation\("grouped_mm"\)') as info:
        summary(m, (16,), dtypes=[torch.long], verbose=0)
    # both ways out, each complete
    assert ("which fake tensors on the meta device cannot do. Either switch the transformers experts to the grouped "
            'matmul, which runs on meta: model.set_experts_implementation("grouped_mm") (or '
            'experts_implementation="grouped_mm" when loading), or summarize on a real device (device="cpu"), with a '
            "smaller config if the model is too large") in str(info.value)
    m.set_experts_implementation("grouped_mm")  # the workaround works
    assert summary(m, (16,), dtypes=[torch.long], verbose=0).active_params == MIXTRAL_ACTIVE


@pytest.mark.zoo
@pytest.mark.parametrize("arch", ["qwen2_moe", "deepseek_v3"])
def test_other_moe_configs_on_meta_float32(arch: str) -> None:
    tf = _quiet_transformers()
    if arch == "qwen2_moe":  # 4 routed experts, top-2, plus an always-on shared expert
        cfg = tf.Qwen2MoeConfig(vocab_size=100, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                                shared_expert_intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, num_experts=4, num_experts_per_tok=2)
        cls, k, e = tf.Qwen2MoeForCausalLM, 2, 4
    else:  # 8 routed experts, top-2, one shared expert, the first layer dense
        cfg = tf.DeepseekV3Config(vocab_size=100, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                  n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
                                  first_k_dense_replace=1, n_group=2, topk_group=1, q_lora_rank=16,
                                  kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8)
        cls, k, e = tf.DeepseekV3ForCausalLM, 2, 8
    torch.manual_seed(0)
    real = cls(cfg)
    with torch.device("meta"):
        fake = cls(cfg)
    total = sum(p.numel() for p in real.parameters())
    routed = sum(p.numel() for n, p in real.named_parameters() if ".mlp.experts." in n)
    active = total - routed + routed * k // e  # shared + k/E of the routed experts
    for model, method in ((real, "measured"), (fake, "top-k")):
        s = summary(model, (16,), dtypes=[torch.long], batch_size=1, macs=True, verbose=0)
        assert (s.total_params, s.expert_params, s.active_params, s.active_params_method) == (
            total, routed, active, method)
        assert s.unknown_ops == ()
    assert summary(fake, (16,), dtypes=[torch.long], batch_size=1, macs=True, verbose=0).total_macs == \
        summary(real, (16,), dtypes=[torch.long], batch_size=1, macs=True, verbose=0).total_macs


@pytest.mark.zoo
def test_mixtral_8x7b_shaped_on_meta() -> None:
    tf = _quiet_transformers()
    cfg = tf.MixtralConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                           num_key_value_heads=8, vocab_size=32000, num_local_experts=8, num_experts_per_tok=2)
    with torch.device("meta"):
        m = tf.MixtralForCausalLM(cfg)
    s = summary(m, (128,), dtypes=[torch.long], batch_size=1, macs=True, verbose=0)
    # experts: 32 layers * 8 * 3 * 4096 * 14336 = 45,097,156,608; shared 46,702,792,704 - that
    # = 1,605,636,096; active = shared + 2/8 of the experts = 1,605,636,096 + 11,274,289,152
    assert (s.total_params, s.expert_params, s.active_params) == (46_702_792_704, 45_097_156_608, 12_879_925_248)
    # per token and layer: attention projections 4096 * (4096 + 1024 + 1024 + 4096) = 41,943,040,
    # router 4096 * 8 = 32,768, two experts 2 * 3 * 4096 * 14336 = 352,321,536 -> 394,297,344;
    # x 32 layers + lm_head 4096 * 32000 = 12,748,587,008 per token, x 128 = 1,631,819,137,024;
    # attention scores 32 layers * 32 heads * 128 * 128 * (128 + 128) = 4,294,967,296
    assert s.total_macs == 1_631_819_137_024 + 4_294_967_296 and s.unknown_ops == ()


# --- evidence of routing: a layout alone is not a mixture of experts ------------------------------

class Stack(nn.Module):
    """Three layers named ``experts``, every token through each one: nothing is routed."""

    def __init__(self) -> None:
        super().__init__()
        self.experts = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])  # 3 * (8*8 + 8) = 216

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for e in self.experts:
            x = e(x)
        return x


class SoftMixture(nn.Module):
    """A gate weighting every expert for every token (a dense soft mixture): nothing is routed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Linear(8, 4)
        self.experts = nn.ModuleList([Expert() for _ in range(4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate(x).softmax(-1)
        return sum(w[..., e, None] * expert(x) for e, expert in enumerate(self.experts))


def _no_moe(s: Summary) -> None:
    assert (s.expert_params, s.active_params, s.active_params_method) == (None, None, None)
    assert "Active" not in str(s) and "Routed" not in str(s) and "Active" not in s.render("tree")


def test_layers_named_experts_without_a_router_are_not_moe() -> None:
    m = Stack()
    s = summary(m, (8,), verbose=0)  # each of the 3 experts saw all 2 rows: 6 = tokens x E, no router
    assert s.total_params == sum(p.numel() for p in m.parameters()) == 216
    _no_moe(s)
    _no_moe(summary(m, verbose=0))  # no forward: no top_k, no gate
    with torch.device("meta"):
        _no_moe(summary(Stack(), (8,), verbose=0))
    # every expert saw every token although a gate exists, and no router declares a top-k: not routed
    _no_moe(summary(SoftMixture(), (8,), batch_size=4, verbose=0))

    class Unused(Stack):  # the experts are never called: 0 rows is no evidence either
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    _no_moe(summary(Unused(), (8,), verbose=0))


def test_a_gate_without_top_k_and_no_forward_is_moe_of_unknown_activity() -> None:
    s = summary(SoftMixture(), verbose=0)  # no forward: the gate is the evidence, k unknown
    assert (s.expert_params, s.active_params, s.active_params_method) == (4 * 280, None, None)
    assert "Active params per token: unknown (no routing seen); routed experts hold 1,120" in str(s)


def test_k_equals_e_router_is_moe_with_every_parameter_active() -> None:
    torch.manual_seed(0)
    s = summary(TopKMoE(k=4), (16, 8), batch_size=1, verbose=0)
    # top-4 of 4: every token to every expert, R = 16 * 4 = T x E; the router declares k = 4 = E, so
    # it is routing that picks all: active = 36 + 4/4 of 1,120 = 1,156 = total
    assert (s.total_params, s.expert_params, s.active_params, s.active_params_method) == (1156, 1120, 1156, "measured")
    assert "Active params per token: 1,156 of 1,156 (100.00%; measured: tokens each expert processed" in str(s)
    s = summary(TopKMoE(k=4), verbose=0)
    assert (s.active_params, s.active_params_method) == (1156, "config")  # 36 + 1,120 * 4 / 4


def test_stacked_experts_without_routing_ids_are_not_moe() -> None:
    class Stacked(nn.Module):  # num_experts and [E, ...] weights, but all experts run on every token
        def __init__(self) -> None:
            super().__init__()
            self.num_experts = 4
            self.w = nn.Parameter(torch.randn(4, 8, 8))  # 4 * 64 = 256

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.einsum("th,ehk->tk", x, self.w)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.experts = Stacked()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.experts(x)

    _no_moe(summary(Block(), (8,), batch_size=3, verbose=0))  # called without top_k_index
    _no_moe(summary(Block(), verbose=0))  # no forward, no router


def test_meta_hint_for_a_hand_written_router_is_one_complete_sentence() -> None:
    with torch.device("meta"):
        m = TopKMoE()
    with pytest.raises(ForwardError) as info:
        summary(m, (16, 8), verbose=0)
    hints = [line for line in str(info.value).splitlines() if "mixture-of-experts" in line]
    assert hints == ["  hint: mixture-of-experts routing picks each expert's tokens by value (nonzero / torch.where "
                     "on the routing mask), which fake tensors on the meta device cannot do: summarize on a real "
                     'device (device="cpu") instead, with smaller sizes if the model is too large']
