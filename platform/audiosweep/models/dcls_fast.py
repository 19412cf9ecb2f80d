"""A fast `Dcls2d`: the same parameters, state dict and numerics as `DCLS.construct.modules.Dcls2d`.

The `dcls` layer builds its dense kernel from a (d, d, 2, C, 1, K) broadcast in every layer and
every forward. Here the construction uses three facts:

- every interpolation `dcls` offers (Gaussian, bilinear "v1", triangle "max") is separable:
  element k of a channel contributes ``w_k / (sum(g_y) * sum(g_x) + 1e-7) * g_y ⊗ g_x`` with
  two 1-d profiles of length d, so a channel's kernel is a (d, K) @ (K, d) product;
- positions and sigmas are shared by the layers of a stage, so the profiles are built once per
  stage per forward (`SharedInterpolation`) and only the weighted product is per layer;
- in eval mode the kernel is constant: it is cached and rebuilt when a parameter's version
  changes or `train()` is called.

Kernels never hold subnormal floats (`flush_subnormals`): CPU convolutions slow down ~25x on
them. Kernels no gradient flows through (eval) also drop values below half an ulp of their
largest (`drop_negligible_taps`).

Kernel rows or columns that can only ever meet zero padding (kernel larger than the feature map)
are cropped. The kernel is also cropped, symmetrically, to the rows and columns where it is not
exactly zero: Gaussians are flushed to 0.0 a few sigmas from their centre, so a kernel whose
positions sit near the centre (as at initialisation: 17x17 of 23x23 in training, 9x9 in eval)
has exact-zero borders whose products add nothing; the result is unchanged and a kernel with
positions spread over the grid (as after training) keeps its full size. Cached (eval) kernels
are cropped on every device, kernels built for training on the CPU only (the scan waits for the
kernel each forward). On CPU the depthwise convolution runs channels_last, with a backward pass
made of forward convolutions (torch's CPU backward for large depthwise kernels is far slower).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from DCLS.construct.modules import Dcls2d
from torch import Tensor
from torch.autograd.function import once_differentiable

SUPPORTED_VERSIONS = ("gauss", "v1", "max")
# Constants of dcls 0.1.1's ConstructKernel2d.
_GAUSS_SIGMA_FLOOR = 0.27
_TRIANGLE_WIDTH_FLOOR = 1.0
_NORM_EPS = 1e-7


class _DclsLogFilter(logging.Filter):
    """Drops the implicit-GEMM notices `Dcls2d.__init__` logs at warning level for every layer."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "DCLS" not in record.pathname


@contextlib.contextmanager
def quiet_dcls_construction() -> Iterator[None]:
    """Silence dcls's per-layer construction warnings (they concern a CUDA extension not used here)."""
    root = logging.getLogger()
    log_filter = _DclsLogFilter()
    root.addFilter(log_filter)
    try:
        yield
    finally:
        root.removeFilter(log_filter)


def _tensor_key(tensor: Tensor | None) -> tuple | None:
    """Identity and in-place version of a tensor: changes whenever its values may have changed."""
    if tensor is None:
        return None
    return (id(tensor), tensor.data_ptr(), tensor._version, tensor.dtype, tensor.device)


def axis_profiles(
    positions: Tensor, sigmas: Tensor | None, version: str, dilated_kernel_size: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-axis interpolation profiles of every kernel element, as `dcls` defines them.

    positions, sigmas: (2, out, in/groups, K); index 0 acts on the last (time) axis, index 1 on
    the rows (mel), each offset by ``dilated_kernel_size[i] // 2`` as in dcls.
    Returns (g_rows (C', K, d0), g_cols (C', K, d1), inv_norm (C', K)) with C' = out * in/groups.
    """
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"fast DCLS supports versions {SUPPORTED_VERSIONS}, got {version!r}")
    d0, d1 = dilated_kernel_size
    count = positions.shape[-1]
    col_pos = positions[0].reshape(-1, count) + d0 // 2
    row_pos = positions[1].reshape(-1, count) + d1 // 2
    cols = torch.arange(d1, device=positions.device, dtype=positions.dtype)
    rows = torch.arange(d0, device=positions.device, dtype=positions.dtype)
    col_dist = cols - col_pos[..., None]
    row_dist = rows - row_pos[..., None]
    if version == "gauss":
        col_sig = sigmas[0].reshape(-1, count).abs() + _GAUSS_SIGMA_FLOOR
        row_sig = sigmas[1].reshape(-1, count).abs() + _GAUSS_SIGMA_FLOOR
        g_cols = torch.exp(-0.5 * (col_dist / col_sig[..., None]) ** 2)
        g_rows = torch.exp(-0.5 * (row_dist / row_sig[..., None]) ** 2)
    elif version == "v1":
        g_cols = (1 - col_dist.abs()).relu()
        g_rows = (1 - row_dist.abs()).relu()
    else:
        col_width = sigmas[0].reshape(-1, count).abs() + _TRIANGLE_WIDTH_FLOOR
        row_width = sigmas[1].reshape(-1, count).abs() + _TRIANGLE_WIDTH_FLOOR
        g_cols = (col_width[..., None] - col_dist.abs()).relu()
        g_rows = (row_width[..., None] - row_dist.abs()).relu()
    # dcls normalises each element by its sum over the whole dilated grid (not the cropped one).
    inv_norm = 1.0 / (g_rows.sum(-1) * g_cols.sum(-1) + _NORM_EPS)
    return g_rows, g_cols, inv_norm


def kernel_from_profiles(
    weight: Tensor,
    profiles: tuple[Tensor, Tensor, Tensor],
    rows: tuple[int, int],
    cols: tuple[int, int],
    drop_negligible: bool = False,
) -> Tensor:
    """Dense kernel (out, in/groups, h, w) over the window rows x cols of the dilated grid.

    Subnormal values are always flushed to zero (`flush_subnormals`); with ``drop_negligible``
    (for kernels no gradient flows through), so are values too small to count
    (`drop_negligible_taps`).
    """
    g_rows, g_cols, inv_norm = profiles
    out_channels, in_per_group, count = weight.shape
    scale = weight.reshape(-1, count) * inv_norm
    left = g_rows[:, :, rows[0] : rows[1]] * scale[..., None]
    kernel = left.transpose(1, 2) @ g_cols[:, :, cols[0] : cols[1]]
    kernel = drop_negligible_taps(kernel) if drop_negligible else flush_subnormals(kernel)
    return kernel.reshape(out_channels, in_per_group, rows[1] - rows[0], cols[1] - cols[0])


def flush_subnormals(kernel: Tensor) -> Tensor:
    """The kernel with every value smaller than the dtype's smallest normal number set to 0.

    Gaussian tails underflow to subnormal floats (down to 1.4e-45 in float32), and CPU depthwise
    convolutions (oneDNN) run about 25x slower on subnormal weights. They are flushed here, as
    the kernel is built, instead of through a process-wide flush-to-zero flag that would change
    the numerics of the user's own code. What is dropped is below 1.2e-38 (float32/bfloat16):
    no output changes measurably, and gradients still flow through every value kept.
    """
    tiny = torch.finfo(kernel.dtype).tiny
    return kernel.masked_fill(kernel.abs() < tiny, 0.0)


def drop_negligible_taps(kernel: Tensor) -> Tensor:
    """The kernel (..., h, w) with every value too small to count set to exact zero.

    A value counts when the dtype can add it to its kernel's largest magnitude: values below
    half a unit in the last place of that magnitude (2^-24 of it in float32) are dropped, and
    so is anything below the dtype's smallest normal number (`flush_subnormals`). Where the
    inputs under two taps are of similar size, a dropped product is smaller than the rounding
    error of the largest one in the same output sum.

    Only for kernels no gradient flows through: the gradients of positions and sigmas weigh
    the Gaussian tails by (distance / sigma)^2, so dropping them moved a sigma gradient by
    3e-5 relative. What it buys is the zero-border crop (`zero_border`): the Gaussians of an
    initialised layer (sigma 0.5, positions within about 2 of the centre) fall below 2^-24 of
    their peak within 3 taps, so its cached 23x23 kernel shrinks to about 9x9 instead of the
    17x17 that the subnormal bound alone leaves.
    """
    finfo = torch.finfo(kernel.dtype)
    magnitude = kernel.detach().abs()
    floor = magnitude.amax((-2, -1), keepdim=True) * (finfo.eps / 2)
    return kernel.masked_fill(magnitude < floor.clamp_min(finfo.tiny), 0.0)


def _recomputing() -> bool:
    """True while a forward runs inside a backward pass (activation checkpointing recomputes)."""
    return torch._C._current_graph_task_id() != -1


class SharedInterpolation:
    """The per-axis profiles of one stage's shared positions and sigmas, built once per forward.

    A stage's layers run one after another in a forward pass; the first to ask builds the
    profiles and the others reuse them. A layer asking a second time means a new pass has
    started (or the layer is called again), so the profiles are rebuilt: in training they carry
    the autograd graph of that pass. Any change of the parameters (in-place version, identity,
    grad mode) also forces a rebuild.

    Under activation checkpointing a layer re-runs inside backward and does what it did in the
    forward pass: the layer that built the profiles builds them again (non-reentrant checkpoints
    require the same saved tensors), the others reuse them. When the forward pass had no graph
    (reentrant checkpoints run it under no_grad) every layer builds its own, so that gradients
    reach the positions.
    """

    def __init__(self) -> None:
        self._profiles: tuple[Tensor, Tensor, Tensor] | None = None
        self._key: tuple | None = None
        self._users: set[int] = set()
        self._builder: int | None = None

    def profiles(self, layer: Dcls2d) -> tuple[Tensor, Tensor, Tensor]:
        if torch.is_grad_enabled() and _recomputing():
            reusable = self._profiles is not None and self._profiles[0].requires_grad
            if reusable and self._builder != id(layer):
                return self._profiles
            return self._build(layer)
        key = (
            _tensor_key(layer.P),
            _tensor_key(layer.SIG),
            layer.version,
            tuple(layer.dilated_kernel_size),
            torch.is_grad_enabled(),
            torch.is_inference_mode_enabled(),
        )
        if self._profiles is None or key != self._key or id(layer) in self._users:
            self._profiles = self._build(layer)
            self._key = key
            self._users = set()
            self._builder = id(layer)
        self._users.add(id(layer))
        return self._profiles

    @staticmethod
    def _build(layer: Dcls2d) -> tuple[Tensor, Tensor, Tensor]:
        return axis_profiles(layer.P, layer.SIG, layer.version, tuple(layer.dilated_kernel_size))

    def clear(self) -> None:
        self._profiles, self._key, self._users, self._builder = None, None, set(), None

    def __getstate__(self) -> dict:
        # Cached profiles may hold an autograd graph, which cannot be copied or pickled.
        return {"_profiles": None, "_key": None, "_users": set(), "_builder": None}


def _depthwise_weight_grad(
    x: Tensor, grad_out: Tensor, kernel_size: tuple[int, int], padding: tuple[int, int]
) -> Tensor:
    """d loss / d kernel of a stride-1 depthwise conv, as one batch-1 depthwise convolution.

    grad[c, a, b] = sum_n sum_ij x_pad[n, c, i + a, j + b] * grad_out[n, c, i, j]: a convolution
    of each padded (n, c) plane with its own grad_out plane, summed over n.
    """
    n, c, h, w = x.shape
    ph, pw = padding
    padded = F.pad(x.contiguous(), (pw, pw, ph, ph)).reshape(1, n * c, h + 2 * ph, w + 2 * pw)
    planes = grad_out.contiguous().reshape(n * c, 1, *grad_out.shape[-2:])
    grad = F.conv2d(padded, planes, groups=n * c)
    return grad.reshape(n, c, *kernel_size).sum(0).unsqueeze(1)


class _DepthwiseConv2d(torch.autograd.Function):
    """Stride-1 depthwise conv whose backward pass is made of forward convolutions."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel: Tensor, bias: Tensor | None, padding: tuple[int, int]):
        ctx.save_for_backward(x, kernel)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return F.conv2d(x, kernel, bias, 1, padding, 1, x.shape[1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, kernel = ctx.saved_tensors
        ph, pw = ctx.padding
        kh, kw = kernel.shape[-2:]
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
        grad_x = grad_kernel = grad_bias = None
        if ctx.needs_input_grad[0]:
            flipped = kernel.flip((-2, -1))
            grad_x = F.conv2d(grad_out, flipped, None, 1, (kh - 1 - ph, kw - 1 - pw), 1, x.shape[1])
        if ctx.needs_input_grad[1]:
            grad_kernel = _depthwise_weight_grad(x, grad_out, (kh, kw), (ph, pw))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum((0, 2, 3))
        return grad_x, grad_kernel, grad_bias, None


def _crop(size: int, kernel: int, padding: int, stride: int) -> tuple[tuple[int, int], int]:
    """Kernel window that can touch the input along one axis, and the padding that goes with it."""
    if stride != 1 or kernel != 2 * padding + 1:
        return (0, kernel), padding
    cut = max(0, padding - (size - 1))
    return (cut, kernel - cut), padding - cut


def zero_border(kernel: Tensor, padding: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns cut symmetrically from each side because they are exactly zero.

    Dropping c taps from both ends of an axis together with c of its padding leaves every output
    the same (for any stride): the dropped taps met padding or multiplied exact zeros.
    """
    support = kernel.detach().ne(0).flatten(0, -3).any(0)  # (h, w): nonzero in any channel
    return _zero_cut(support.any(1), padding[0]), _zero_cut(support.any(0), padding[1])


def _zero_cut(used: Tensor, padding: int) -> int:
    """Taps droppable from both ends of one axis whose nonzero taps are ``used``."""
    taps = used.nonzero().flatten()
    if taps.numel() == 0:
        return 0
    return min(int(taps[0]), used.numel() - 1 - int(taps[-1]), padding)


class FastDcls2d(Dcls2d):
    """`Dcls2d` with a fast forward; parameters, init, state dict and results are dcls's."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_count: int,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilated_kernel_size: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        version: str = "gauss",
    ) -> None:
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"FastDcls2d supports versions {SUPPORTED_VERSIONS}, got {version!r}")
        with quiet_dcls_construction():
            super().__init__(
                in_channels,
                out_channels,
                kernel_count,
                stride=stride,
                padding=padding,
                dilated_kernel_size=dilated_kernel_size,
                groups=groups,
                bias=bias,
                padding_mode=padding_mode,
                version=version,
                use_implicit_gemm=False,
            )
        self.shared = SharedInterpolation()
        self._kernel_cache: tuple[tuple, Tensor] | None = None

    def extra_repr(self) -> str:
        return super().extra_repr().replace("(using torch im2col GEMM)", "(fast path)")

    def train(self, mode: bool = True) -> FastDcls2d:
        self.reset_kernel_cache()
        return super().train(mode)

    def reset_kernel_cache(self) -> None:
        self._kernel_cache = None
        self.shared.clear()

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state["_kernel_cache"] = None
        return state

    def _window(
        self, height: int, width: int
    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        kh, kw = self.dilated_kernel_size
        rows, pad_h = _crop(height, kh, self.padding[0], self.stride[0])
        cols, pad_w = _crop(width, kw, self.padding[1], self.stride[1])
        return rows, cols, (pad_h, pad_w)

    def _kernel(
        self, rows: tuple[int, int], cols: tuple[int, int], padding: tuple[int, int]
    ) -> tuple[Tensor, tuple[int, int]]:
        """The dense kernel over rows x cols and the padding to use with it."""
        params = [p for p in (self.weight, self.P, self.SIG) if p is not None]
        needs_graph = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        cacheable = not self.training and not needs_graph
        key = None
        if cacheable:
            key = (
                tuple(_tensor_key(p) for p in params),
                rows,  # the window fixes the padding too
                cols,
                torch.is_inference_mode_enabled(),
            )
            if self._kernel_cache is not None and self._kernel_cache[0] == key:
                return self._kernel_cache[1]
        # Kernels are built in the parameters' precision; the convolution itself may autocast.
        with torch.autocast(device_type=self.weight.device.type, enabled=False):
            kernel = kernel_from_profiles(
                self.weight, self.shared.profiles(self), rows, cols, drop_negligible=not needs_graph
            )
        if cacheable or kernel.device.type == "cpu":
            # A cached kernel is scanned once per parameter change; on the CPU the scan's host
            # sync costs nothing against the convolutions it shrinks (forward and backward of
            # one layer at (8, 96, 32, 250), 2 threads: 0.14 s at 17x17 instead of 0.18 s).
            cut_h, cut_w = zero_border(kernel, padding)
            if cut_h or cut_w:
                h, w = kernel.shape[-2:]
                kernel = kernel[..., cut_h : h - cut_h, cut_w : w - cut_w]
                padding = (padding[0] - cut_h, padding[1] - cut_w)
        if cacheable:
            kernel = kernel.contiguous()
        self._kernel_cache = (key, (kernel, padding)) if cacheable else None
        return kernel, padding

    def forward(self, input: Tensor) -> Tensor:
        if self.padding_mode != "zeros":
            x = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            kh, kw = self.dilated_kernel_size
            kernel, _ = self._kernel((0, kh), (0, kw), (0, 0))
            return F.conv2d(x, kernel, self.bias, self.stride, 0, 1, self.groups)
        rows, cols, padding = self._window(*input.shape[-2:])
        kernel, padding = self._kernel(rows, cols, padding)
        depthwise = self.groups == self.in_channels == self.out_channels
        if depthwise and input.device.type == "cpu" and self.stride == (1, 1):
            # Large depthwise kernels are 30-100x faster channels_last on CPU.
            x = input.contiguous(memory_format=torch.channels_last)
            needs_graph = torch.is_grad_enabled() and (
                x.requires_grad
                or kernel.requires_grad
                or (self.bias is not None and self.bias.requires_grad)
            )
            if (
                needs_graph
                and padding[0] < kernel.shape[-2]
                and padding[1] < kernel.shape[-1]
                and x.dtype in (torch.float32, torch.float64)
                and not torch.is_autocast_enabled("cpu")
            ):
                return _DepthwiseConv2d.apply(x, kernel, self.bias, padding)
            return F.conv2d(x, kernel, self.bias, 1, padding, 1, self.groups)
        return F.conv2d(input, kernel, self.bias, self.stride, padding, 1, self.groups)
