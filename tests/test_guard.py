"""The guard undoes only what the summary did (issue 7): the model's state is restored, hooks and
attributes its own forward installs stay, other threads' work is never undone, Ctrl-C cannot cut
the restore short, meta models and module cycles get clear behaviour."""

from __future__ import annotations

import random
import signal
import threading
import time
import warnings

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_globals

from netsummary import DeviceError, InputSpecError, summary
from netsummary._tracing.guard import ModelGuard
from netsummary._tracing.switches import MHA_FASTPATH_OFF, SharedSwitch
from netsummary._tracing.watch import StateWatch

from conftest import snapshot, assert_unchanged


def _global_hook_ids() -> tuple:
    return tuple(
        tuple(getattr(module_globals, name))
        for name in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_forward_hooks_always_called",
                     "_global_forward_hooks_with_kwargs")
    )


# --- hooks and attributes the model's own forward installs stay -------------------------------------


class SelfHooking(nn.Module):
    """Installs a hook on its first forward and remembers that it did (transformers v5 style)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.captured: list = []

    def forward(self, x):
        if not getattr(self, "_hooks_installed", False):
            self.inner.register_forward_hook(lambda m, a, out: self.captured.append(out.shape))
            self._hooks_installed = True
        self.captured.clear()
        out = self.inner(x)
        if not self.captured:
            raise RuntimeError("hook flag set but hook missing")
        return out


def test_hooks_a_model_installs_in_its_first_forward_stay():
    m = SelfHooking()
    s = summary(m, (4,), verbose=0)
    assert s.total_params == 4 * 4 + 4
    assert m._hooks_installed and len(m.inner._forward_hooks) == 1
    m(torch.zeros(1, 4))  # would raise "hook missing" if the guard had removed it
    assert m.captured == [torch.Size([1, 4])]


def test_a_global_hook_the_forward_registers_stays_and_netsummary_leaves_none():
    handles = []

    class RegistersGlobal(nn.Linear):
        def forward(self, x):
            if not handles:
                handles.append(module_globals.register_module_forward_hook(lambda *a: None))
            return super().forward(x)

    before = _global_hook_ids()
    try:
        summary(RegistersGlobal(3, 3), (3,), verbose=0)
        after = _global_hook_ids()
        assert handles[0].id in module_globals._global_forward_hooks
        assert len(after[0]) == len(before[0]) + 1 and after[1:] == before[1:]
    finally:
        for h in handles:
            h.remove()


def test_transformers_model_summarized_first_still_returns_hidden_states():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                   intermediate_size=32, vocab_size=50)
    torch.manual_seed(0)
    model = transformers.LlamaModel(cfg).eval()
    ids = torch.randint(0, 50, (1, 6))
    s = summary(model, input_data={"input_ids": ids, "output_hidden_states": True}, verbose=0)
    assert s.total_params == sum(p.numel() for p in model.parameters())
    out = model(input_ids=ids, output_hidden_states=True)
    assert out.hidden_states is not None and len(out.hidden_states) == 3  # embeddings + 2 layers


# --- the model's state is restored, including in-place writes into parameters ------------------------


class ActNorm(nn.Module):
    """Glow's ActNorm: initializes its parameters from the first batch, through ``.data``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(n))
        self.scale = nn.Parameter(torch.ones(n))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    def forward(self, x):
        if self.initialized.item() == 0:
            with torch.no_grad():
                self.loc.data.copy_(-x.mean(0))
                self.scale.data.copy_(1 / (x.std(0) + 1e-6))
                self.initialized.fill_(1)
        return (x + self.loc) * self.scale


class Clamping(nn.Linear):
    def forward(self, x):
        with torch.no_grad():
            self.weight.clamp_(-0.01, 0.01)
        return super().forward(x)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize(
    "make, size, dtypes",
    [
        (lambda: ActNorm(5), (5,), None),
        (lambda: Clamping(4, 4), (4,), None),
        (lambda: nn.Embedding(10, 4, max_norm=0.5), (3,), [torch.long]),  # weights ~N(0,1): norms >> 0.5
        (lambda: nn.Sequential(nn.EmbeddingBag(10, 4, max_norm=0.5, mode="sum")), (3,), [torch.long]),
    ],
)
def test_parameters_written_in_place_by_the_forward_are_restored(unchanged, make, size, dtypes, mode):
    torch.manual_seed(0)
    m = make()
    with unchanged(m):
        summary(m, size, dtypes=dtypes, mode=mode, verbose=0)


def test_only_written_parameters_are_copied():
    big, small = nn.Parameter(torch.zeros(1000)), nn.Parameter(torch.zeros(3))
    with StateWatch([big, small]) as w, torch.no_grad():
        small.data.add_(1)
        small.data.add_(1)  # a second write copies nothing more
        _ = big * 2  # reads copy nothing
    assert [p is small for p, _ in w.saved] == [True]
    w.restore()
    assert small.tolist() == [0.0, 0.0, 0.0]


class EMAByReassignment(nn.Module):
    """Updates its statistics by assigning a new tensor (same shape) and grows a cache (new shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("running", torch.zeros(3))
        self.register_buffer("cache", torch.zeros(1), persistent=False)
        self.cache_len = 1

    def forward(self, x):
        self.running = 0.9 * self.running + 0.1 * x.mean(0)
        if x.shape[0] > self.cache_len:
            self.cache = torch.arange(x.shape[0], dtype=torch.float32)
            self.cache_len = x.shape[0]
        return x + self.cache[: x.shape[0], None]


def test_a_buffer_replaced_at_its_shape_is_restored_a_rebuilt_cache_stays():
    m = EMAByReassignment()
    running = m.running
    summary(m, (3,), verbose=0)
    assert m.running is running and m.running.tolist() == [0.0, 0.0, 0.0]
    assert m.cache.shape == (m.cache_len,) and m.cache_len >= 2  # consistent with its own bookkeeping
    m(torch.zeros(m.cache_len, 3))  # still runs


def test_meta_model_with_max_norm_embedding_summarizes():
    with torch.device("meta"):
        m = nn.Sequential(nn.Embedding(100, 8, max_norm=1.0), nn.Linear(8, 2))
    s = summary(m, (5,), dtypes=[torch.long], verbose=0)
    assert s.total_params == 100 * 8 + 8 * 2 + 2
    assert m[0].weight.device.type == "meta"


# --- RNG ---------------------------------------------------------------------------------------------


def test_eval_summary_never_sets_the_global_generator():
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    summary(m, (4,), verbose=0)
    assert torch.equal(torch.rand(3), expected)


def test_train_summary_restores_the_generator_its_dropout_drew_from():
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    torch.manual_seed(7)
    state = torch.get_rng_state()
    summary(m, (4,), mode="train", verbose=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_python_random_drawn_by_the_forward_is_restored():
    class LayerDrop(nn.Linear):
        def forward(self, x):
            return x if random.random() < 0.5 else super().forward(x)

    state = random.getstate()
    summary(LayerDrop(3, 3), (3,), verbose=0)
    assert random.getstate() == state


def test_dropout_on_meta_draws_nothing():
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).to("meta")
    state = torch.get_rng_state()
    summary(m, (4,), mode="train", verbose=0)
    assert torch.equal(torch.get_rng_state(), state)


# --- threads -----------------------------------------------------------------------------------------


def test_two_summaries_in_two_threads_beside_a_third_thread():
    """Hundreds of rounds: complete records, no leftover hooks, the fast-path flag restored, and
    the third thread's random sequence, global hook and MHA forwards undisturbed."""
    torch.set_num_threads(1)
    a = nn.Sequential(*[nn.Linear(4, 4) for _ in range(30)])
    b = nn.Sequential(nn.Dropout(0.1), *[nn.Conv1d(2, 2, 1) for _ in range(20)])  # eval: draws nothing
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.zeros(1, 3, 8)
    hooks_before, fastpath_before = _global_hook_ids(), torch.backends.mha.get_fastpath_enabled()
    stop, draws, problems = threading.Event(), [], []
    third_hook_calls = []

    def third() -> None:  # draws random numbers, registers and removes a global hook, runs MHA
        handle = None
        while not stop.is_set():
            draws.append(tuple(torch.rand(4).tolist()))
            if handle is None:
                handle = module_globals.register_module_forward_hook(lambda *args: None)
            else:
                handle.remove()
                if handle.id in module_globals._global_forward_hooks:
                    problems.append("a hook removed by the third thread came back")
                handle = None
            with torch.no_grad():
                mha(x, x, x)
            if handle is not None and handle.id not in module_globals._global_forward_hooks:
                problems.append("the third thread's hook was wiped")
        if handle is not None:
            handle.remove()
        third_hook_calls.append(True)

    t3 = threading.Thread(target=third)
    t3.start()
    rounds, deadline = 200, time.monotonic() + 120
    try:
        for _ in range(rounds):
            out: dict = {}
            ta = threading.Thread(target=lambda: out.__setitem__("a", summary(a, (4,), verbose=0)))
            tb = threading.Thread(target=lambda: out.__setitem__("b", summary(b, (2, 3), verbose=0)))
            ta.start(), tb.start()
            ta.join(60), tb.join(60)
            assert len(out["a"].layers) == 31 and len(out["b"].layers) == 22
            assert time.monotonic() < deadline, "two-thread summaries take far too long"
    finally:
        stop.set()
        t3.join(60)
    assert third_hook_calls and not problems
    assert _global_hook_ids() == hooks_before
    assert torch.backends.mha.get_fastpath_enabled() == fastpath_before
    assert len(set(draws)) == len(draws), "the third thread's random numbers were replayed"


def test_a_forward_of_the_same_model_in_another_thread_is_not_recorded():
    m = nn.Sequential(*[nn.Linear(4, 4) for _ in range(5)])
    stop = threading.Event()

    def run() -> None:
        with torch.no_grad():
            while not stop.is_set():
                m(torch.zeros(1, 4))

    t = threading.Thread(target=run)
    t.start()
    try:
        for _ in range(50):
            s = summary(m, (4,), verbose=0)
            assert [r.name for r in s.layers] == ["", "0", "1", "2", "3", "4"]
    finally:
        stop.set()
        t.join(30)


def test_shared_switch_is_restored_by_the_last_holder_only():
    value = {"v": True}
    switch = SharedSwitch(lambda: value["v"], lambda v: value.__setitem__("v", v), False)
    first, second = switch.held(), switch.held()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert value["v"] is False  # the second summary still runs
    second.__exit__(None, None, None)
    assert value["v"] is True


def test_shared_switch_keeps_a_change_made_by_someone_else_meanwhile():
    value = {"v": True}
    switch = SharedSwitch(lambda: value["v"], lambda v: value.__setitem__("v", v), False)
    with switch.held():
        value["v"] = "user's own"
    assert value["v"] == "user's own"


def test_mha_fast_path_is_off_during_and_restored_after():
    was = torch.backends.mha.get_fastpath_enabled()
    with MHA_FASTPATH_OFF.held():
        assert torch.backends.mha.get_fastpath_enabled() is False
    assert torch.backends.mha.get_fastpath_enabled() == was


# --- Ctrl-C ------------------------------------------------------------------------------------------


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals reach the main thread")
def test_ctrl_c_during_the_restore_is_deferred_until_the_model_is_whole():
    class InterruptedGuard(ModelGuard):
        def _restore(self) -> None:
            signal.raise_signal(signal.SIGINT)  # a second Ctrl-C, at the very start of the restore
            super()._restore()

    m = nn.Sequential(nn.BatchNorm1d(3), nn.Dropout(0.5))
    before = snapshot(m)
    with pytest.raises(KeyboardInterrupt):
        with InterruptedGuard(m, list(m.modules())):
            m.train()
            m(torch.randn(8, 3))  # running stats and the RNG move
    assert_unchanged(before, m)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals reach the main thread")
def test_timed_ctrl_c_never_leaves_the_model_modified():
    torch.set_num_threads(1)
    m = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.2)) for _ in range(10)])
    before = snapshot(m)
    hooks = _global_hook_ids()
    summary(m, (8,), mode="train", verbose=0)  # warm-up
    t0 = time.perf_counter()
    summary(m, (8,), mode="train", verbose=0)
    duration = time.perf_counter() - t0
    rng = random.Random(0)
    interrupted = 0
    for _ in range(250):  # before the fix, about 5% of the rounds left the model modified
        timer = threading.Timer(rng.uniform(0, duration * 1.2), signal.raise_signal, (signal.SIGINT,))
        try:
            timer.start()
            summary(m, (8,), mode="train", verbose=0)
            timer.join()
            time.sleep(0.002)  # let a late signal land here rather than in the checks
        except KeyboardInterrupt:
            interrupted += 1
        try:
            timer.join()
        except KeyboardInterrupt:
            interrupted += 1
        assert_unchanged(before, m)
        assert _global_hook_ids() == hooks
    assert interrupted > 0  # the signals did land


# --- module cycles -----------------------------------------------------------------------------------


def test_a_module_cycle_is_a_clear_error_at_once():
    class Child(nn.Module):
        def __init__(self, owner):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.owner = owner

        def forward(self, x):
            return self.lin(x)

    class Parent(nn.Module):
        def __init__(self):
            super().__init__()
            self.child = Child(self)

        def forward(self, x):
            return self.child(x)

    m = Parent()
    result: list = []

    def run() -> None:
        try:
            summary(m, (2,), verbose=0)
        except InputSpecError as err:
            result.append(err)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    assert result, "summary() of a cyclic module graph did not fail promptly"
    msg = str(result[0])
    assert "cycle" in msg and "'child' (Child)" in msg and "the root (Parent)" in msg and "'owner'" in msg


# --- copy only what the forward writes -----------------------------------------------------------------


class MaskedAttention(nn.Module):
    """A causal-mask buffer read by every forward and written by none (nanoGPT style)."""

    def __init__(self, t: int) -> None:
        super().__init__()
        self.register_buffer("mask", torch.tril(torch.ones(t, t)).view(1, t, t))
        self.proj = nn.Linear(t, t)

    def forward(self, x):
        return self.proj(x).masked_fill(self.mask[:, : x.shape[1], : x.shape[1]] == 0, 0.0)


def test_a_buffer_nothing_writes_is_never_copied():
    m = MaskedAttention(64)
    with ModelGuard(m) as guard:
        m(torch.rand(2, 64, 64))
    assert guard._watch.saved == []


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_batchnorm_statistics_are_copied_only_when_written(mode):
    m = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    bn = m[1]
    with ModelGuard(m) as guard:
        m.train(mode == "train")
        m(torch.rand(4, 3))
    copied = {t.data_ptr() for t, _ in guard._watch.saved}  # the watch holds .data aliases of them
    stats = (bn.running_mean, bn.running_var, bn.num_batches_tracked)
    written = {t.data_ptr() for t in stats} if mode == "train" else set()
    assert copied == written
    assert int(bn.num_batches_tracked) == 0 and bn.running_mean.tolist() == [0.0, 0.0, 0.0]


class FunctionalNorm(nn.Module):
    """Running statistics of its own, updated by F.batch_norm (native, undeclared writes)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("var", torch.ones(3))

    def forward(self, x):
        return nn.functional.batch_norm(x, self.mean, self.var, training=True, momentum=0.5)


@pytest.mark.parametrize(
    "make",
    [FunctionalNorm, lambda: nn.Sequential(nn.InstanceNorm1d(3, track_running_stats=True)),
     lambda: nn.Sequential(nn.Unflatten(1, (3, 1, 1)), nn.BatchNorm2d(3, momentum=None))],
)
def test_running_statistics_updated_by_native_kernels_are_restored(unchanged, make):
    m = make()
    x = (3,) if not isinstance(m, nn.Sequential) or not isinstance(m[0], nn.InstanceNorm1d) else (3, 5)
    with unchanged(m):
        summary(m, x, mode="same" if isinstance(m, FunctionalNorm) else "train", verbose=0)


# --- layout changes, rebinding, conversions, .grad values, attention without dropout ------------------


class Reshaping(nn.Module):
    """Changes its tensors' layout in place or rebinds them; ``how`` picks one way."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.lin = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.register_buffer("cache", torch.arange(4.0))

    def forward(self, x):
        with torch.no_grad():
            if self.how == "resize_":
                self.cache.resize_(8)
            elif self.how == "t_":
                self.lin.weight.t_()
            elif self.how == "unsqueeze_":
                self.cache.unsqueeze_(0)
            elif self.how == "set_":
                self.cache.set_(torch.zeros(6))
            elif self.how == ".data =":
                self.lin.weight.data = self.lin.weight.data * 0
            elif self.how == "half":
                self.lin.half()
                self.lin.float()
                self.bn.double()
            elif self.how == "to meta":
                self.bn.to("meta")  # an offloading pattern: the values would be gone for good
                self.bn.to_empty(device="cpu")
        return self.bn(self.lin(x).to(self.bn.weight.dtype)).to(x.dtype)


@pytest.mark.parametrize("how", ["resize_", "t_", "unsqueeze_", "set_", ".data =", "half", "to meta"])
def test_layout_changes_and_rebinding_in_the_forward_are_undone(unchanged, how):
    torch.manual_seed(0)
    m = Reshaping(how)
    with unchanged(m):
        summary(m, (4,), mode="train", verbose=0)
    m(torch.rand(3, 4))  # still runs


def test_grad_values_a_backward_in_the_forward_accumulates_into_are_restored():
    class InnerLoop(nn.Linear):
        def forward(self, x):
            with torch.enable_grad():
                super().forward(x.detach()).sum().backward()  # accumulates into .grad in place
            return super().forward(x)

    m = InnerLoop(4, 4)
    m.weight.grad = torch.zeros(4, 4)
    grad = m.weight.grad
    summary(m, (4,), mode="train", verbose=0)
    assert m.weight.grad is grad and m.weight.grad.abs().sum() == 0 and m.bias.grad is None


def test_attention_without_dropout_draws_nothing():
    m = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, batch_first=True), 2).eval()
    x, q = torch.rand(2, 5, 16), torch.rand(2, 2, 5, 8)  # drawn outside the guard
    with ModelGuard(m) as guard, torch.no_grad():
        m(x)
        nn.functional.scaled_dot_product_attention(q, q, q, dropout_p=0.0)
    assert guard._watch.global_draws == set()
    with ModelGuard(m) as guard, torch.no_grad():
        nn.functional.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    assert guard._watch.global_draws == {"cpu"}


def test_summaries_of_the_same_model_in_four_threads_take_turns():
    torch.set_num_threads(1)
    m = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.1)) for _ in range(10)]).train()
    before = snapshot(m)
    errors: list = []

    def go(i: int) -> None:
        try:
            for k in range(10):
                s = summary(m if k % 2 else m[1:], (8,), mode="train" if (i + k) % 2 else "eval", verbose=0)
                assert len(s.layers) in (41, 37)  # 1 + 10 blocks * (1 + 3); a slice of 9 blocks: 1 + 9 * 4
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert_unchanged(before, m)


def test_a_forward_that_reseeds_the_generator_has_it_restored():
    class Reseeding(nn.Linear):
        def forward(self, x):
            torch.manual_seed(123)
            return super().forward(x)

    m = Reseeding(3, 3)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    summary(m, (3,), verbose=0)
    assert torch.equal(torch.get_rng_state(), state) and torch.initial_seed() == 5


def test_a_module_holding_itself_is_named_once():
    m = nn.Linear(2, 2)
    m.me = m
    with pytest.raises(InputSpecError, match=r"the root \(Linear\) holds itself \(Linear\) as submodule 'me'"):
        summary(m, (2,), verbose=0)


@pytest.mark.parametrize("macs", [False, True])
def test_one_dispatch_mode_runs_the_forward_and_the_watch_works_while_counting(unchanged, macs):
    depths: list[int] = []

    class Probe(ActNorm):
        def forward(self, x):
            depths.append(torch._C._len_torch_dispatch_stack())
            return super().forward(x)

    m = nn.Sequential(Probe(4), nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), Clamping(4, 4))
    torch.manual_seed(0)
    with unchanged(m):
        s = summary(m, (4,), mode="train", macs=macs, verbose=0)
    assert depths[0] == 1  # the MAC counter stands in for the write watch
    if macs:
        assert s.total_macs == 4 * 4 + 4 * 4  # two Linear(4, 4) layers, per sample


def test_a_models_own_train_is_called_only_to_change_the_mode():
    calls = []

    class Own(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x)

        def train(self, mode=True):  # as transformers' PreTrainedModel.train does extra work
            calls.append(mode)
            return super().train(mode)

    m = Own().eval()
    calls.clear()
    summary(m, (4,), verbose=0)  # eval asked, eval already: nothing to change
    assert calls == [] and not m.training and not m.fc.training
    summary(m, (4,), verbose=0, mode="train")  # a change: through the model's own train()
    assert calls == [True]
    assert not m.training and not m.fc.training  # and the flags are back afterwards


class WritesBuffers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.register_buffer("scale", torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.scale.mul_(1.0)  # an in-place write: the watch saves and restores it
        return self.bn(x) * self.scale  # train mode: num_batches_tracked += 1


def test_restored_tensors_get_their_version_counts_back():
    """A graph the caller built before the summary saved ``scale``: after a summary whose forward
    wrote it in place (values restored), its backward must still pass autograd's version check."""
    m = WritesBuffers()
    x = torch.randn(3, 4, requires_grad=True)
    loss = (x * m.scale).sum()
    before = (m.scale._version, m.bn.num_batches_tracked._version, m.bn.running_mean._version)
    summary(m, (4,), verbose=0, mode="train")
    assert (m.scale._version, m.bn.num_batches_tracked._version, m.bn.running_mean._version) == before
    loss.backward()  # raised "modified by an inplace operation" while the count stayed bumped
    assert torch.equal(x.grad, torch.ones(3, 4))  # d/dx sum(x * 1) = 1
    assert int(m.bn.num_batches_tracked) == 0 and m.scale.tolist() == [1.0] * 4



class _BatchNormBlock(nn.Module):
    """A user's block (so the forward is watched) whose batch norm writes its buffers in train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.lin(x)) * 2


@pytest.mark.parametrize("device, mode", [("meta", "eval"), ("meta", "train"), ("cpu", "eval")])
def test_a_model_of_inference_tensors_is_summarized(device, mode):
    # built under torch.inference_mode: its tensors have no version counter for the guard to read
    # (was a raw "Inference tensors do not track version counter" from the guard's snapshot)
    with torch.inference_mode():
        m = _BatchNormBlock()
    before = snapshot(m)
    s = summary(m, (4,), device=device, mode=mode, verbose=0)
    assert s.total_params == sum(p.numel() for p in m.parameters()) == 4 * 4 + 4 + 4 + 4
    assert_unchanged(before, m)


def _quantized(values: torch.Tensor, scale: float) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quantize_per_tensor; models still hold such tensors
        return torch.quantize_per_tensor(values, scale, 0, torch.quint8)


class _QuantizedBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("q", _quantized(torch.arange(4.0), 0.5))

    def forward(self, x):
        self.q = _quantized(torch.ones(4), 0.25)  # replaced at its shape: the guard puts the original back
        return self.lin(x) + self.q.dequantize()


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_quantized_buffer_is_compared_and_restored(mode):
    # was a raw NotImplementedError (aten::is_set_to on QuantizedCPU) from the guard's restore
    m = _QuantizedBuffer()
    q, values = m.q, m.q.dequantize().clone()
    s = summary(m, (4,), device="cpu", mode=mode, verbose=0)
    assert s.total_params == 4 * 4 + 4
    assert m.q is q and torch.equal(m.q.dequantize(), values)  # [0, 0.5, 1, 1.5]: not the forward's ones


def test_a_quantized_tensor_on_meta_is_refused_before_the_forward():
    m = _QuantizedBuffer()
    q = m.q
    with pytest.raises(DeviceError, match=r"device='meta': 'q' is a quantized tensor \(quint8\).*on its own device \(cpu\)"):
        summary(m, (4,), device="meta", verbose=0)
    assert m.q is q
    assert summary(m, device="meta", verbose=0).total_params == 4 * 4 + 4  # nothing run: nothing refused
