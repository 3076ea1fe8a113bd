"""Every attention of the Hallo networks goes through one function, and a ComfyUI backend gives the same output.

``pipeline.models.attention_dispatch.attention`` runs SDPA unless a backend with the contract of ComfyUI's
``comfy.ldm.modules.attention.optimized_attention`` is registered (the nodes layer registers core's inside
ComfyUI). Here a stand-in with that contract (a plain softmax(QK^T)V with core's reshape conventions) drives
both UNets, with SDPA made unusable to show that no attention bypasses the dispatch. With ``COMFYUI_PATH``
set, the same comparison runs in a subprocess against the real ComfyUI attention functions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hallo_nodes.pipeline.models import attention_dispatch
from hallo_nodes.pipeline.models.attention_dispatch import attention, set_attention_backend
from hallo_nodes.pipeline.models.attention_ops import DispatchAttnProcessor
from hallo_nodes.pipeline.models.blocks import spatial_transformer
from hallo_nodes.pipeline.models.net import HalloNet, build_net
from hallo_nodes.pipeline.models.reference_bank import ReferenceBank
from hallo_nodes.pipeline.models.unet_inputs import plain_self_attention
from hallo_nodes.pipeline.models.unets import LevelMasks, UNetConditions
from hallo_nodes.testing.tiny_models import tiny_architecture

TESTS = Path(__file__).resolve().parent
# fp32: different kernels sum in different orders; the random net amplifies that to ~3e-5 of the largest value
# (measured with the stand-in and ComfyUI 0.3.64's sub_quad/split on CPU; a wrong attention gives > 1e-2).
TOL = 1e-4
B, F, H, W = 2, 4, 8, 8


def core_contract_attention(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                            skip_output_reshape=False, **kwargs):
    """Stand-in for ComfyUI's ``optimized_attention``: same signature, reshape rules and fixed scale."""
    assert mask is None
    if skip_reshape:
        b, _, _, dim = q.shape
    else:
        b, _, inner = q.shape
        dim = inner // heads
        q, k, v = (t.reshape(b, -1, heads, dim).transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax((q @ k.transpose(-1, -2)) * dim**-0.5, dim=-1)
    out = weights @ v
    return out if skip_output_reshape else out.transpose(1, 2).reshape(b, -1, heads * dim)


@pytest.fixture(autouse=True)
def _sdpa_by_default():
    set_attention_backend(None)
    yield
    set_attention_backend(None)


def tiny_net() -> HalloNet:
    torch.manual_seed(0)
    return build_net(tiny_architecture(), "cpu").eval()


def run_unets(net: HalloNet) -> dict[str, torch.Tensor]:
    """ReferenceNet bank and one CFG denoiser call (reference attention on the conditional half only)."""
    arch = net.arch
    g = torch.Generator().manual_seed(1)
    width, cross = arch.block_out_channels[0], arch.cross_attention_dim
    with torch.no_grad():
        feats = net.reference_unet(torch.randn(3, 4, H, W, generator=g), torch.randn(3, 4, cross, generator=g))
        bank = ReferenceBank({p: f[:1] for p, f in feats.items()},
                             {p: f[1:].unsqueeze(0).expand(B, -1, -1, -1) for p, f in feats.items()},
                             torch.tensor([-1] * F + [0] * F))
        sizes = [(H >> i) * (W >> i) for i in range(4)]
        masks = LevelMasks(*([torch.rand(B * F, n, generator=g) for n in sizes] for _ in range(3)))
        ctx = UNetConditions(torch.randn(B, 4, cross, generator=g),
                             torch.randn(B, F, arch.audio_tokens, arch.audio_dim, generator=g), masks,
                             torch.randn(B * F, width, H, W, generator=g), bank, (1.0, 0.8, 1.3))
        out = net.denoising_unet(torch.randn(B, 4, F, H, W, generator=g), torch.tensor(500.0), ctx)
    return {"denoiser": out, **{f"bank {p}": f for p, f in feats.items()}}


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest |a - b| of each output relative to its largest value (at least 1)."""
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) / max(1.0, float(a[k].abs().max())) for k in a)


def test_unets_with_a_core_style_backend_match_sdpa(monkeypatch) -> None:
    net = tiny_net()
    sdpa_calls = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        sdpa_calls.append(1)
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting_sdpa)
    with_sdpa = run_unets(net)
    assert float(with_sdpa["denoiser"].abs().max()) > 0.1 and len(with_sdpa) == 17

    backend_calls = []

    def backend(*args, **kwargs):
        backend_calls.append(1)
        return core_contract_attention(*args, **kwargs)

    def no_sdpa(*args, **kwargs):
        raise AssertionError("SDPA called although a backend is registered")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", no_sdpa)
    set_attention_backend(backend)
    with_backend = run_unets(net)
    assert len(backend_calls) == len(sdpa_calls) > 100  # every attention went through the backend
    assert _max_difference(with_sdpa, with_backend) < TOL


def test_a_plain_softmax_backend_is_not_a_no_op(monkeypatch) -> None:
    """Guard: a backend that gets the attention wrong moves the outputs far past the tolerance above."""
    net = tiny_net()
    reference = run_unets(net)

    def wrong_scale(q, k, v, heads, **kwargs):
        return core_contract_attention(q * 2.0, k, v, heads, **kwargs)

    set_attention_backend(wrong_scale)
    assert _max_difference(reference, run_unets(net)) > 100 * TOL


def test_every_attention_module_uses_the_dispatch_processor(monkeypatch) -> None:
    net = tiny_net()
    attentions = [m for m in net.modules() if m.__class__.__name__ in ("Attention", "TemporalAttention")]
    assert len(attentions) > 50
    assert all(isinstance(m.processor, DispatchAttnProcessor) for m in attentions)
    # diffusers' own forward of a spatial transformer now runs through the backend too, same result as ours
    transformer = net.reference_unet.down_blocks[0].attentions[0]
    x = torch.randn(2, transformer.in_channels, H, W)
    tokens = torch.randn(2, 4, net.arch.cross_attention_dim)
    with torch.no_grad():
        ours = spatial_transformer(transformer, x, tokens, plain_self_attention, "down_blocks.0.attentions.0")
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", None)
        set_attention_backend(core_contract_attention)
        theirs = transformer(x, encoder_hidden_states=tokens, return_dict=False)[0]
    assert float((ours - theirs).abs().max()) < 1e-5


def test_custom_scale_falls_back_to_sdpa() -> None:
    calls = []
    set_attention_backend(lambda *a, **k: calls.append(1) or core_contract_attention(*a, **k))
    q, k, v = torch.randn(3, 2, 5, 8).unbind(0)
    default = attention(q[None], k[None], v[None], 8**-0.5)
    assert calls == [1]
    custom = attention(q[None], k[None], v[None], 0.5)
    assert calls == [1]  # a backend cannot take a scale: SDPA ran
    expected = torch.nn.functional.scaled_dot_product_attention(q[None], k[None], v[None], scale=0.5)
    torch.testing.assert_close(custom, expected.transpose(1, 2).reshape(1, 5, 16))
    assert float((custom - default).abs().max()) > 1e-3


def test_bad_backends_are_refused_clearly() -> None:
    with pytest.raises(TypeError, match="set_attention_backend"):
        set_attention_backend("optimized_attention")

    def heads_layout(q, k, v, heads, **kwargs):
        return core_contract_attention(q, k, v, heads, skip_output_reshape=True, **kwargs)

    set_attention_backend(heads_layout)
    q = torch.randn(1, 2, 5, 8)
    with pytest.raises(RuntimeError, match="heads_layout.*returned shape"):
        attention(q, q, q)
    assert attention_dispatch.attention_backend() is heads_layout


# -- the real ComfyUI attention functions (subprocess, only with COMFYUI_PATH) ---------------------------------
_CHILD = """
import json, sys
sys.path[:0] = {paths!r}
try:
    import torch
    from comfy.cli_args import args
    args.cpu = not torch.cuda.is_available()
    import comfy.ldm.modules.attention as core
except Exception as exc:  # reported to the parent as a skip reason
    print(json.dumps({{"import_error": f"{{type(exc).__name__}}: {{exc}}"}}))
    sys.exit(0)
torch.set_num_threads(1)
from test_attention_dispatch import _max_difference, run_unets, tiny_net
from hallo_nodes.pipeline.models.attention_dispatch import set_attention_backend
net = tiny_net()
reference = run_unets(net)
functions = {{"optimized_attention": core.optimized_attention, **core.REGISTERED_ATTENTION_FUNCTIONS}}
result = {{}}
for name, fn in functions.items():
    set_attention_backend(fn)
    result[name] = _max_difference(reference, run_unets(net))
print(json.dumps({{"differences": result}}))
"""


def test_real_comfyui_attention_matches_sdpa() -> None:
    root = os.environ.get("COMFYUI_PATH")
    if not root or not (Path(root) / "comfy" / "ldm" / "modules" / "attention.py").is_file():
        pytest.skip("set COMFYUI_PATH to a ComfyUI checkout to compare with core's optimized_attention")
    python = sys.executable  # the pack's interpreter; ComfyUI's requirements must be importable there
    paths = [str(Path(root).resolve()), str(TESTS), *[p for p in sys.path if p]]
    proc = subprocess.run([python, "-c", _CHILD.format(paths=paths)], capture_output=True, text=True, timeout=600,
                          cwd=root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if "import_error" in report:
        pytest.skip(f"ComfyUI at {root} is not importable from {python}: {report['import_error']}")
    differences = report["differences"]
    assert "optimized_attention" in differences and len(differences) >= 3, differences
    assert all(d < TOL for d in differences.values()), differences
