"""Deployment export of a trained GANomaly generator: a self-contained scoring model.

The exported model takes images ``(N, C, 32, 32)`` in [-1, 1] and returns the anomaly score of
:meth:`GanomalyHooks.score` in eval mode, shape ``(N,)``: the mean over the latent of
``(z1 - z2)^2``. It needs neither this package nor its networks to run: a TorchScript file loads
with ``torch.jit.load`` (Python or C++), an ONNX file with any ONNX runtime.

Two graphs can be exported (``optimize``):

* ``optimize=True`` (the TorchScript default): :class:`GanomalyScorer`, an inference-only rewrite
  with the same math, for CPU speed: every eval-mode batch norm is folded into the convolution before it; the
  encoder's last 4x4 convolution over a 4x4 map and the decoder's first 4x4 transposed convolution
  of a 1x1 map are written as the matrix products they are; each stride-2 transposed convolution
  takes the fastest of three equivalent forms for its width (the op itself, a 3x3 convolution +
  pixel shuffle, or a matrix product + col2im); the decoder's last layer and the second encoder's
  first convolution run on the four phases of x_hat (:class:`_PhaseTail`), so the 32x32 image is
  never assembled; tanh is ``2*sigmoid(2x) - 1``. The layout follows the widths
  (:func:`default_layout`): channels-last for networks 8 or more channels wide, and for networks
  at most 8 channels wide :class:`BatchLastScorer`, the same math with the batch as the innermost
  dimension, where every convolution is a few matrix products. Scores equal the eager model's up
  to float rounding (tested: within 1e-5 absolute and 1e-4 of their scale). ``benchmarks/``
  measures it (section ``scoring``).
* ``optimize=False``: the generator's own layers as they are (eval mode); the default for ONNX,
  whose runtimes do their own graph optimisation (see :func:`export_onnx`).

TorchScript files are frozen (weights are constants). Recent torch versions mark ``torch.jit`` as
deprecated in favour of ``torch.export``; it still works, and its files load from C++ as well.

Use :func:`export_model_file` to go from a saved model (``model.pt``, a run folder or a run's
``checkpoint.pt``) to an exported file; it is what a ``gankd-ganomaly export`` command would call.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .networks import IMAGE_SIZE, Decoder, Encoder, GanomalyGenerator

EXPORT_FORMATS = ("torchscript", "onnx")


def check_scorer_input(images: torch.Tensor, in_channels: int) -> None:
    """Raise ``ValueError`` naming the expected ``(N, C, 32, 32)`` float32 input; compiled into every exported
    scorer (TorchScript shows it as the last line of its ``torch.jit.Error``), so a wrong input fails at the
    door, not deep inside the graph, and a 64x64 image is refused instead of silently scored."""
    if images.dim() != 4 or images.size(1) != in_channels or images.size(2) != 32 or images.size(3) != 32:
        raise ValueError("expected images of shape (N, " + str(in_channels) + ", 32, 32) in [-1, 1], got ("
                         + ", ".join([str(d) for d in images.shape]) + ")")
    if images.dtype != torch.float32:
        raise ValueError("expected float32 images in [-1, 1] of shape (N, " + str(in_channels) + ", 32, 32); "
                         "convert them first, e.g. images.float() / 127.5 - 1 for 0-255 values")


# --- the inference graph ----------------------------------------------------------------------------------------


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as ``y = x * scale + shift`` per channel (float64 for exact folding)."""
    var = bn.running_var.double()
    scale = bn.weight.double() / torch.sqrt(var + bn.eps)
    shift = bn.bias.double() - bn.running_mean.double() * scale
    return scale, shift


def _layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    t = t.detach().float()
    return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t.contiguous()


class _FoldedEncoder(nn.Module):
    """An :class:`Encoder` with its batch norms folded: 3 strided convs (+bias, LeakyReLU) and a matrix head."""

    def __init__(self, encoder: Encoder, channels_last: bool) -> None:
        super().__init__()
        layers = list(encoder.features)
        convs = [m for m in layers if isinstance(m, nn.Conv2d)]
        bns = [m for m in layers if isinstance(m, nn.BatchNorm2d)]
        acts = [m for m in layers if isinstance(m, nn.LeakyReLU)]
        if len(convs) != 3 or len(bns) != 3 or len(acts) != 3:
            raise ValueError("expected an Encoder of 3 x (Conv2d, BatchNorm2d, LeakyReLU) blocks")
        self.slope = float(acts[0].negative_slope)
        self.channels_last = channels_last
        for i, (conv, bn) in enumerate(zip(convs, bns)):
            if conv.bias is not None or conv.stride != (2, 2) or conv.padding != (1, 1):
                raise ValueError("expected bias-free 4x4 convolutions with stride 2 and padding 1")
            scale, shift = _bn_scale_shift(bn)
            self.register_buffer(f"w{i}", _layout(conv.weight.double() * scale[:, None, None, None], channels_last))
            self.register_buffer(f"b{i}", _layout(shift, False))
        # head: a 4x4 conv over the 4x4 map, no padding = one matrix product over the flattened map,
        # flattened in the order the map is stored (c, h, w) or, channels_last, (h, w, c)
        head = encoder.head.weight.detach()  # (out, c3, 4, 4)
        self.register_buffer("head", _layout((head.permute(0, 2, 3, 1) if channels_last else head).flatten(1), False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_first(F.leaky_relu_(F.conv2d(x, self.w0, self.b0, 2, 1), self.slope))

    def after_first(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder from its second block on, given the first block's output."""
        x = F.leaky_relu_(F.conv2d(x, self.w1, self.b1, 2, 1), self.slope)
        x = F.leaky_relu_(F.conv2d(x, self.w2, self.b2, 2, 1), self.slope)
        if self.channels_last:
            x = x.permute(0, 2, 3, 1)  # a view of a channels_last map
        return F.linear(x.reshape(x.shape[0], -1), self.head)  # (N, out)


def _phase_weight(weight: torch.Tensor, phase_major: bool = False) -> torch.Tensor:
    """A (Cin, C, 4, 4) stride-2 padding-1 transposed-conv weight as a (4*C, Cin, 2, 2) conv weight.

    Phase (a, b) of the output, y[2m+a, 2n+b], only sees input rows m-1+a, m+a (kernel taps 3, 1 for a=0;
    2, 0 for a=1) and likewise for columns: a 2x2 convolution of the input padded by 1. All four are one
    2x2 convolution with 4*C outputs: over the (H+2, W+2) padded map its (H+1, W+1) output holds phase
    (a, b) at [m+a, n+b]. Outputs are ordered (c, a, b), or (a, b, c) with ``phase_major``.
    """
    cin, c = int(weight.shape[0]), int(weight.shape[1])
    taps = ((3, 1), (2, 0))  # phase a: the kernel rows that meet padded-map rows (m + a, m + a + 1)
    out = weight.new_zeros(c, 2, 2, cin, 2, 2)
    for a in (0, 1):
        for b in (0, 1):
            for i, ky in enumerate(taps[a]):
                for j, kx in enumerate(taps[b]):
                    out[:, a, b, :, i, j] = weight[:, :, ky, kx].t()
    if phase_major:
        out = out.permute(1, 2, 0, 3, 4, 5)
    return out.reshape(4 * c, cin, 2, 2)


def _subpixel_weight(weight: torch.Tensor, phase_major: bool = False) -> torch.Tensor:
    """A (Cin, Cout, 4, 4) stride-2 padding-1 transposed-conv weight as a (4*Cout, Cin, 3, 3) conv weight.

    The same layer as a 3x3 convolution (padding 1) with 4*Cout outputs followed by ``pixel_shuffle(., 2)``:
    phase (a, b)'s 2x2 kernel (:func:`_phase_weight`) placed at offset (a, b) of the 3x3 window, 9/4 its
    multiply-adds. Outputs are ordered (c, a, b) as pixel_shuffle wants them, or (a, b, c) with
    ``phase_major`` (see :class:`_SubpixelDeconv`).
    """
    cin, cout = int(weight.shape[0]), int(weight.shape[1])
    phases = _phase_weight(weight).reshape(cout, 2, 2, cin, 2, 2)
    out = weight.new_zeros(cout, 2, 2, cin, 3, 3)
    for a in (0, 1):
        for b in (0, 1):
            out[:, a, b, :, a:a + 2, b:b + 2] = phases[:, a, b]
    if phase_major:
        out = out.permute(1, 2, 0, 3, 4, 5)
    return out.reshape(cout * 4, cin, 3, 3)


class _NativeDeconv(nn.Module):
    """conv_transpose2d(k=4, s=2, p=1) as PyTorch runs it: fastest for wide layers (the teacher's)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, channels_last: bool, tanh: bool) -> None:
        super().__init__()
        self.register_buffer("weight", _layout(weight, channels_last))
        self.register_buffer("bias", _layout(bias, False))
        self.tanh = tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(x, self.weight, self.bias, 2, 1)
        return _tanh(y) if self.tanh else torch.relu_(y)


class _SubpixelDeconv(nn.Module):
    """The same layer as a 3x3 conv + pixel shuffle (see :func:`_subpixel_weight`).

    PyTorch's CPU transposed convolution is slow for narrow layers (a student's: 2-5x slower than
    this form, measured in benchmarks/); this form costs 9/4 the multiply-adds, so wide layers keep
    the native op. An element-wise activation commutes with the shuffle, so it runs before it, on the
    conv's own (dense) output. Channels-last, the conv's outputs are ordered (a, b, c): each pixel's
    four phases are then contiguous runs of C values, and the shuffle is a copy of those runs (~4x
    faster than ``pixel_shuffle`` on a channels-last map, measured).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, channels_last: bool, tanh: bool) -> None:
        super().__init__()
        self.register_buffer("weight", _layout(_subpixel_weight(weight.double(), channels_last), channels_last))
        self.register_buffer("bias", _layout(bias.repeat(4) if channels_last else bias.repeat_interleave(4), False))
        self.channels_last, self.tanh, self.cout = channels_last, tanh, int(weight.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, 1, 1)
        y = _tanh(y) if self.tanh else torch.relu_(y)
        if not self.channels_last:
            return F.pixel_shuffle(y, 2)
        n, h, w = y.shape[0], y.shape[2], y.shape[3]
        # (N, H, W, a, b, C) -> (N, H, a, W, b, C) = the (N, 2H, 2W, C) map, returned as a channels_last view
        y = y.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, self.cout).permute(0, 1, 3, 2, 4, 5)
        return y.reshape(n, 2 * h, 2 * w, self.cout).permute(0, 3, 1, 2)


class _Col2ImDeconv(nn.Module):
    """The same layer as one matrix product and col2im (``F.fold``): fastest for many inputs, few outputs."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, channels_last: bool, tanh: bool) -> None:
        super().__init__()
        self.register_buffer("weight", _layout(weight.flatten(1).t(), False))  # (Cout*16, Cin)
        self.register_buffer("bias", _layout(bias.reshape(-1, 1, 1), False))
        self.channels_last, self.tanh = channels_last, tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        if self.channels_last:  # (N, H*W, Cin) is a view of a channels_last map
            cols = torch.matmul(x.permute(0, 2, 3, 1).reshape(n, h * w, c), self.weight.t()).transpose(1, 2)
        else:
            cols = torch.matmul(self.weight, x.reshape(n, c, h * w))  # (N, Cout*16, H*W)
        y = F.fold(cols, (2 * h, 2 * w), 4, 1, 1, 2) + self.bias
        return _tanh(y) if self.tanh else torch.relu_(y)


def _tanh(y: torch.Tensor) -> torch.Tensor:
    """tanh(y) = 2 sigmoid(2y) - 1, in place: the same function, ~2.5x faster than torch.tanh on CPU (within 2e-7)."""
    return y.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


def _deconv_module(weight: torch.Tensor, bias: torch.Tensor, channels_last: bool, tanh: bool) -> nn.Module:
    """The fastest CPU form of a stride-2 4x4 transposed conv (+ReLU, or tanh for the last) for its width.

    The rule comes from per-layer measurements (benchmarks/README.md): the native op for wide
    layers, a 3x3 conv + pixel shuffle for narrow ones, a matrix product + col2im for a wide input
    with few outputs (the teacher's last layer).
    """
    cin, cout = int(weight.shape[0]), int(weight.shape[1])
    if cout <= 4 and cin >= 32:
        return _Col2ImDeconv(weight, bias, channels_last, tanh)
    if cin * cout <= 256:
        return _SubpixelDeconv(weight, bias, channels_last and not tanh, tanh)
    return _NativeDeconv(weight, bias, channels_last, tanh)


class _PhaseTail(nn.Module):
    """The decoder's last layer (transposed conv + tanh) and the second encoder's first block (conv + LeakyReLU),
    run on the four 16x16 phases of the 32x32 image x_hat instead of on the image.

    Phase (a, b) of x_hat is x_hat[2m+a, 2n+b]. Each phase of the transposed conv is a 2x2 conv, and all four
    are one 2x2 conv with 4*C outputs over the 16x16 map padded by 1 (:func:`_phase_weight`): its 17x17
    output holds phase (a, b) at [m+a, n+b]. The encoder's stride-2 4x4 conv then reads, for output (i, j),
    exactly rows i, i+1 and columns j, j+1 of every phase map: it is a 2x2 conv over the 17x17 phases (the
    two border entries that stand for the image's zero padding are zeroed). Same multiply-adds as the layers
    themselves, and the 32x32 image is never assembled: no pixel shuffle, no layout change of a 1- or 3-channel
    image.
    """

    def __init__(self, deconv_weight: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor,
                 slope: float, channels_last: bool) -> None:
        super().__init__()
        c = int(deconv_weight.shape[1])
        up = _phase_weight(deconv_weight)  # (4C, Cin, 2, 2), outputs (c, a, b)
        # encoder kernel row ky reads image row 2i-1+ky = phase a at 17x17-row i+dy: ky -> (a, dy)
        where = {0: (1, 0), 1: (0, 0), 2: (1, 1), 3: (0, 1)}
        cout = int(conv_weight.shape[0])
        down = conv_weight.new_zeros(cout, c, 2, 2, 2, 2)
        for ky, (a, dy) in where.items():
            for kx, (b, dx) in where.items():
                down[:, :, a, b, dy, dx] = conv_weight[:, :, ky, kx]
        # x_hat = tanh(u) = 2 sigmoid(2u) - 1: the factor 2 of the argument goes into ``up``; the affine map
        # 2s - 1 goes into ``down`` (weights x2, bias - sum of weights), so only sigmoid runs element-wise,
        # and a padding entry (x_hat = 0) is s = 1/2
        self.register_buffer("up", _layout(2.0 * up, channels_last))
        down = down.reshape(cout, 4 * c, 2, 2)
        self.register_buffer("down", _layout(2.0 * down, channels_last))
        self.register_buffer("bias", _layout(conv_bias - down.sum(dim=(1, 2, 3)), False))
        self.c, self.slope = c, float(slope)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # h is padded first (a cheap copy): oneDNN's 2x2 kernel with padding of its own is ~1.5x slower
        s = torch.sigmoid_(F.conv2d(F.pad(h, (1, 1, 1, 1)), self.up))  # (N, 4C, 17, 17): (x_hat + 1) / 2 in phases
        p = s.unflatten(1, [self.c, 2, 2])  # a view (N, C, a, b, 17, 17)
        p[:, :, 1, :, 0].fill_(0.5)  # phase a=1, row 0 stands for image row -1: the encoder's zero padding
        p[:, :, 0, :, 16].fill_(0.5)  # phase a=0, row 16 stands for image row 32
        p[:, :, :, 1, :, 0].fill_(0.5)
        p[:, :, :, 0, :, 16].fill_(0.5)
        return F.leaky_relu_(F.conv2d(s, self.down, self.bias, 1, 0), self.slope)


def _fold_decoder(decoder: Decoder) -> tuple[tuple[torch.Tensor, torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
    """A :class:`Decoder`'s layers with their batch norms folded (float64).

    Returns ``((w, b), [(w1, b1), (w2, b2), (w3, b3)])``: the first transposed conv (latent, c3, 4, 4) and its
    per-channel bias (c3,), then the three stride-2 transposed convs (Cin, Cout, 4, 4) with biases (Cout,) (the
    last one's zero, no batch norm: tanh follows it).
    """
    layers = list(decoder.main)
    deconvs = [m for m in layers if isinstance(m, nn.ConvTranspose2d)]
    bns = [m for m in layers if isinstance(m, nn.BatchNorm2d)]
    if len(deconvs) != 4 or len(bns) != 3 or not isinstance(layers[-1], nn.Tanh):
        raise ValueError("expected a Decoder of 3 x (ConvTranspose2d, BatchNorm2d, ReLU) + ConvTranspose2d, Tanh")
    for d in deconvs[1:]:
        if d.bias is not None or d.stride != (2, 2) or d.padding != (1, 1) or d.kernel_size != (4, 4):
            raise ValueError("expected bias-free 4x4 transposed convolutions with stride 2 and padding 1")
    folded = []
    for deconv, bn in zip(deconvs, bns):
        scale, shift = _bn_scale_shift(bn)
        folded.append((deconv.weight.detach().double() * scale[None, :, None, None], shift))
    last = deconvs[3].weight.detach().double()
    folded.append((last, last.new_zeros(last.shape[1])))
    return folded[0], folded[1:]


class _FoldedDecoder(nn.Module):
    """A :class:`Decoder` with its batch norms folded; its first layer is a matrix product."""

    def __init__(self, decoder: Decoder, channels_last: bool) -> None:
        super().__init__()
        (w, shift), folded = _fold_decoder(decoder)
        self.c3 = int(w.shape[1])
        self.channels_last = channels_last
        b = shift[:, None, None].expand(-1, 4, 4)  # (c3, 4, 4)
        if channels_last:  # produce the 4x4 map in (h, w, c) order: a channels_last view, no copy
            w, b = w.permute(0, 2, 3, 1), b.permute(1, 2, 0)
        self.register_buffer("w0", _layout(w.flatten(1).t(), False))  # (c3*16, latent)
        self.register_buffer("b0", _layout(b.flatten(), False))
        self.up1, self.up2, self.up3 = (_deconv_module(w, b, channels_last, i == 2) for i, (w, b) in enumerate(folded))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up3(self.up2_output(z))  # each layer applies its activation (ReLU, ReLU, tanh)

    def up2_output(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder up to (and with) its third layer: the (N, c1, 16, 16) map the last layer takes."""
        x = torch.relu_(F.linear(z, self.w0, self.b0))
        if self.channels_last:
            x = x.view(z.shape[0], 4, 4, self.c3).permute(0, 3, 1, 2)
        else:
            x = x.view(z.shape[0], self.c3, 4, 4)
        return self.up2(self.up1(x))


class GanomalyScorer(nn.Module):
    """Inference-only GANomaly scoring graph: images (N, C, 32, 32) -> scores (N,) (mean of (z1 - z2)^2).

    Built from a generator's eval-mode weights (batch-norm running statistics folded in); later
    changes to the generator do not reach it. ``channels_last`` runs the convolutions on
    channels-last maps (inputs may be in either layout). ``phase_tail=False`` computes x_hat as an
    image and encodes it (the plain order; slower, kept for comparison).
    """

    def __init__(self, generator: GanomalyGenerator, channels_last: bool = False, phase_tail: bool = True) -> None:
        super().__init__()
        generator = _as_generator(generator)
        self.channels_last, self.phase_tail = channels_last, phase_tail
        with torch.no_grad():
            self.encoder1 = _FoldedEncoder(generator.encoder1, channels_last)
            self.decoder = _FoldedDecoder(generator.decoder, channels_last)
            self.encoder2 = _FoldedEncoder(generator.encoder2, channels_last)
            if phase_tail:
                conv, bn = generator.encoder2.features[0], generator.encoder2.features[1]
                scale, shift = _bn_scale_shift(bn)
                self.tail: nn.Module = _PhaseTail(generator.decoder.main[-2].weight.double(),
                                                  conv.weight.double() * scale[:, None, None, None], shift,
                                                  self.encoder2.slope, channels_last)
            else:
                self.tail = nn.Identity()
        self.in_channels = int(generator.in_channels)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_scorer_input(images, self.in_channels)
        z1 = self.encoder1(images)  # channels_last weights make the convs run channels_last
        if self.phase_tail:
            z2 = self.encoder2.after_first(self.tail(self.decoder.up2_output(z1)))
        else:
            z2 = self.encoder2(self.decoder(z1))
        return (z1 - z2).pow(2).mean(dim=1)


def _conv2x2_batch_last(x: torch.Tensor, taps: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A 2x2 convolution (stride 1, no padding) of a batch-last map: (C, H, W, N) -> (O, H-1, W-1, N).

    ``taps`` (4, O, C): the weight of tap (dy, dx) at ``2*dy + dx``; ``bias`` (O, 1) or None. ``x`` may be a
    view whose rows are longer than W*N (its ``stride(1)``; what this function returns is such a view): with
    R the row stride, tap (dy, dx) reads, per channel, one contiguous run of (H-2)*R + (W-1)*N values
    starting at dy*R + dx*N, a plain matrix for the BLAS. So the convolution is four accumulated matrix
    products over pixels and images, with no copy of the input: every SIMD lane is busy however few the
    channels. The outputs also cover the row ends past W-1 (a few wasted columns per row); the returned
    view leaves them out, and a later 2x2 convolution only reads them for its own wasted columns.
    """
    c, h, w, n = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    if x.stride(3) != 1 or x.stride(2) != n:
        x = x.contiguous()
    plane, row = x.stride(0), x.stride(1)
    out_h, out_w = h - 1, w - 1
    length = (out_h - 1) * row + out_w * n
    out = torch.empty([taps.shape[1], out_h * row], dtype=x.dtype, device=x.device)
    result = out[:, :length]
    for t in range(4):
        tap = x.as_strided([c, length], [plane, 1], x.storage_offset() + (t // 2) * row + (t % 2) * n)
        if t == 0:
            if bias is None:
                torch.mm(taps[0], tap, out=result)
            else:
                torch.addmm(bias, taps[0], tap, out=result)
        else:
            result.addmm_(taps[t], tap)
    return out.as_strided([taps.shape[1], out_h, out_w, n], [out_h * row, row, n, 1])


def _taps_2x2(weight: torch.Tensor) -> torch.Tensor:
    """(O, C, 2, 2) conv weight -> (4, O, C), tap (dy, dx) at 2*dy + dx."""
    return weight.permute(2, 3, 0, 1).reshape(4, weight.shape[0], weight.shape[1]).contiguous()


def _taps_4x4_stride2(weight: torch.Tensor) -> torch.Tensor:
    """(O, C, 4, 4) stride-2 conv weight -> the 2x2 taps (4, O, 4C) of the same conv on the space-to-depth map
    (:func:`_space_to_depth`): kernel row ky = 2*dy + py reads input row 2*i + ky = 2*(i + dy) + py."""
    o, c = int(weight.shape[0]), int(weight.shape[1])
    return weight.reshape(o, c, 2, 2, 2, 2).permute(2, 4, 0, 1, 3, 5).reshape(4, o, 4 * c).contiguous()


def _space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W, N), H and W even -> (4C, H/2, W/2, N), channels (c, py, px): one copy of the map."""
    c, h, w, n = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    return x.reshape(c, h // 2, 2, w // 2, 2, n).permute(0, 2, 4, 1, 3, 5).reshape(4 * c, h // 2, w // 2, n)


def _pad_batch_last(x: torch.Tensor) -> torch.Tensor:
    """Zero-pad the two spatial dims of a (C, H, W, N) map by 1 (a new contiguous map)."""
    return F.pad(x, [0, 0, 1, 1, 1, 1])


class BatchLastScorer(nn.Module):
    """:class:`GanomalyScorer`'s math with every map stored (C, H, W, N): the batch is the innermost dim.

    For networks a few channels wide (the MNIST / Fashion-MNIST students, 1-8 channels) oneDNN's
    convolutions vectorize over channels and use 1-4 of AVX2's 8 float lanes. Here every convolution
    is four matrix products vectorized over pixels and images (:func:`_conv2x2_batch_last`): the
    encoders' stride-2 4x4 convolutions are 2x2 convolutions of the space-to-depth map; the decoder's
    stride-2 transposed convolutions are 2x2 convolutions of the padded map whose four phases are copied
    straight into the next layer's padded input (:func:`_phase_weight`; runs of N contiguous values);
    the tail is :class:`_PhaseTail`'s; the encoders' heads and the decoder's first layer are plain
    products over (features, N). Slower than the channels-last graph for wider networks; see
    :func:`default_layout`.
    """

    def __init__(self, generator: GanomalyGenerator) -> None:
        super().__init__()
        generator = _as_generator(generator)
        with torch.no_grad():
            plain = GanomalyScorer(generator, channels_last=False)  # folded weights, (N, C, H, W) order
            for name, encoder, first in (("e1", plain.encoder1, 0), ("e2", plain.encoder2, 1)):
                for i in range(first, 3):  # the second encoder's first conv lives in the tail
                    self.register_buffer(f"{name}_w{i}", _taps_4x4_stride2(getattr(encoder, f"w{i}")))
                    self.register_buffer(f"{name}_b{i}", getattr(encoder, f"b{i}").unsqueeze(1).contiguous())
                self.register_buffer(f"{name}_head", encoder.head)  # (latent, c3*16), columns (c, h, w)
            self.register_buffer("d_w0", plain.decoder.w0)  # (c3*16, latent), rows (c, h, w)
            self.register_buffer("d_b0", plain.decoder.b0.unsqueeze(1).contiguous())
            (up1, b1), (up2, b2), _ = _fold_decoder(generator.decoder)[1]
            self.register_buffer("up1_w", _taps_2x2(_layout(_phase_weight(up1, phase_major=True), False)))
            self.register_buffer("up1_b", _layout(b1.repeat(4).unsqueeze(1), False))
            self.register_buffer("up2_w", _taps_2x2(_layout(_phase_weight(up2, phase_major=True), False)))
            self.register_buffer("up2_b", _layout(b2.repeat(4).unsqueeze(1), False))
            tail = plain.tail
            assert isinstance(tail, _PhaseTail)
            self.register_buffer("tail_up", _taps_2x2(tail.up))  # outputs (c, a, b)
            self.register_buffer("tail_down", _taps_2x2(tail.down))
            self.register_buffer("tail_b", tail.bias.unsqueeze(1).contiguous())
        self.slope, self.c3 = plain.encoder1.slope, plain.decoder.c3
        self.c1, self.c2 = int(up2.shape[1]), int(up1.shape[1])
        self.in_channels = int(generator.in_channels)
        self.eval()

    def _down(self, x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Stride-2 4x4 conv (padding 1) + LeakyReLU: (C, H, W, N) -> (O, H/2, W/2, N)."""
        return F.leaky_relu_(_conv2x2_batch_last(_space_to_depth(_pad_batch_last(x)), taps, bias), self.slope)

    def _up(self, x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor, c: int) -> torch.Tensor:
        """Transposed conv + ReLU: padded (Cin, H+2, W+2, N) -> padded (c, 2H+2, 2W+2, N)."""
        p = torch.relu_(_conv2x2_batch_last(x, taps, bias))  # (4c, H+1, W+1, N), channels (a, b, c)
        h, w, n = p.shape[1] - 1, p.shape[2] - 1, p.shape[3]
        out = p.new_zeros([c, 2 * h + 2, 2 * w + 2, n])
        # out[c, 1 + 2m + a, 1 + 2j + b] = p[(a, b, c), m + a, j + b]: one strided copy
        sc, si, sj = p.stride(0), p.stride(1), p.stride(2)
        phases = p.as_strided([c, h, 2, w, 2, n], [sc, si, si + 2 * c * sc, sj, sj + c * sc, 1], p.storage_offset())
        out[:, 1:2 * h + 1, 1:2 * w + 1].unflatten(1, [h, 2]).unflatten(3, [w, 2]).copy_(phases)
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_scorer_input(images, self.in_channels)
        n, c, size = images.shape[0], images.shape[1], images.shape[2]
        # (N, C*H*W) -> (C*H*W, N) through PyTorch's blocked 2-d transpose (2x faster than a 4-d permute copy)
        flat = torch.empty([c * size * size, n], dtype=images.dtype, device=images.device)
        flat.copy_(images.reshape(n, c * size * size).t())
        h = self._down(flat.view(c, size, size, n), self.e1_w0, self.e1_b0)
        h = self._down(self._down(h, self.e1_w1, self.e1_b1), self.e1_w2, self.e1_b2)
        z1 = torch.mm(self.e1_head, h.reshape(-1, n))  # (latent, N)
        d = torch.relu_(torch.addmm(self.d_b0, self.d_w0, z1)).view(self.c3, 4, 4, n)
        d = self._up(self._up(_pad_batch_last(d), self.up1_w, self.up1_b, self.c2), self.up2_w, self.up2_b, self.c1)
        s = torch.sigmoid_(_conv2x2_batch_last(d, self.tail_up, None))  # (x_hat + 1) / 2 in phases
        half = size // 2
        p = s.unflatten(0, [c, 2, 2])  # (c, a, b, 17, 17, N)
        p[:, 1, :, 0].fill_(0.5)  # the encoder's zero padding, as in _PhaseTail
        p[:, 0, :, half].fill_(0.5)
        p[:, :, 1, :, 0].fill_(0.5)
        p[:, :, 0, :, half].fill_(0.5)
        h = F.leaky_relu_(_conv2x2_batch_last(s, self.tail_down, self.tail_b), self.slope)
        h = self._down(self._down(h, self.e2_w1, self.e2_b1), self.e2_w2, self.e2_b2)
        z2 = torch.mm(self.e2_head, h.reshape(-1, n))
        return (z1 - z2).pow(2).mean(dim=0)


class _EagerScorer(nn.Module):
    """The generator's own (eval-mode) layers with the score on top; what ``optimize=False`` exports."""

    def __init__(self, generator: GanomalyGenerator) -> None:
        super().__init__()
        generator = copy.deepcopy(_as_generator(generator)).eval()
        self.encoder1, self.decoder, self.encoder2 = generator.encoder1, generator.decoder, generator.encoder2
        self.in_channels = int(generator.in_channels)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_scorer_input(images, self.in_channels)
        z1 = self.encoder1(images)
        z2 = self.encoder2(self.decoder(z1))
        return (z1 - z2).pow(2).flatten(1).mean(dim=1)


def _as_generator(gan_or_generator: Any) -> GanomalyGenerator:
    generator = getattr(gan_or_generator, "generator", gan_or_generator)
    if not isinstance(generator, GanomalyGenerator):
        raise TypeError(f"expected a GanomalyGenerator or a GAN holding one, got {type(gan_or_generator).__name__}")
    return generator


LAYOUTS = ("standard", "channels_last", "batch_last")


def default_layout(generator: GanomalyGenerator) -> str:
    """The fastest scoring layout on CPU for these widths, measured in ``benchmarks/`` (batch 256, 1 and 2 threads).

    ``"channels_last"`` when every width is >= 8 (the teacher ~1.3x, the CIFAR-10 student 8-16-64 ~1.1x
    faster than the standard layout; batch-last is slower for them); ``"batch_last"``
    (:class:`BatchLastScorer`) when every width is <= 8 (the MNIST 2-4-8 and Fashion-MNIST 1-2-4
    students: ~1.6x and ~2x faster than the standard layout on 1 thread, ~1.1x and ~1.4x on 2);
    otherwise the standard (N, C, H, W) layout.
    """
    widths = generator.widths
    if max(widths) <= 8:
        return "batch_last"
    return "channels_last" if min(widths) >= 8 else "standard"


def scoring_module(gan_or_generator: Any, *, optimize: bool = True, layout: str | None = None) -> nn.Module:
    """An eval-mode ``nn.Module`` images -> scores (N,) for a GAN or its generator (weights copied).

    ``layout`` (``optimize=True`` only): one of :data:`LAYOUTS`, or None for :func:`default_layout`.
    """
    generator = _as_generator(gan_or_generator)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS} or None, got {layout!r}")
    if not optimize:
        module: nn.Module = _EagerScorer(generator)
    else:
        layout = layout or default_layout(generator)
        module = BatchLastScorer(generator) if layout == "batch_last" else \
            GanomalyScorer(generator, channels_last=layout == "channels_last")
    return module.to(next(generator.parameters()).device).eval()


def _example_input(in_channels: int, batch: int = 2, device: torch.device | str = "cpu") -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(batch, in_channels, IMAGE_SIZE, IMAGE_SIZE, generator=gen) * 2 - 1).to(device)


def _check_channels(generator: GanomalyGenerator, in_channels: int) -> None:
    if int(generator.in_channels) != int(in_channels):
        raise ValueError(f"in_channels={in_channels}, but the generator takes {generator.in_channels}-channel images")


# --- TorchScript --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_jit():
    """Recent torch (2.13 here) marks torch.jit deprecated (in favour of torch.export); it still works, and the
    TorchScript file is what C++/mobile runtimes load today, so its notices are not shown here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        yield


def to_torchscript(gan_or_generator: Any, in_channels: int, *, optimize: bool = True,
                   layout: str | None = None) -> torch.jit.ScriptModule:
    """A TorchScript module whose ``forward(images)`` returns scores (N,); nothing is written."""
    generator = _as_generator(gan_or_generator)
    _check_channels(generator, in_channels)
    module = scoring_module(generator, optimize=optimize, layout=layout)
    device = next(generator.parameters()).device
    with torch.no_grad(), _quiet_jit():
        scripted = torch.jit.script(module)
        scripted = torch.jit.freeze(scripted.eval())  # weights become constants; no training-mode code
    # a frozen module keeps a forward that accepts any batch size; check it runs before handing it out
    with torch.inference_mode():
        scripted(_example_input(in_channels, device=device))
    return scripted


METADATA_NAME = "gankd.json"  # the extra file of a TorchScript export holding the decision threshold


def export_torchscript(gan_or_generator: Any, in_channels: int, path: str | Path, *, optimize: bool = True,
                       layout: str | None = None, metadata: dict | None = None) -> Path:
    """Write a TorchScript scoring model to ``path``; load it with ``torch.jit.load(path)``.

    ``gan_or_generator``: a trained GANomaly :class:`gankd.GAN` or its generator (eval-mode
    statistics are used; the given model is not changed). ``metadata`` (JSON-serialisable, e.g. the threshold)
    is stored in the archive as the extra file :data:`METADATA_NAME` (read it with :func:`read_metadata`).
    Returns the path written.
    """
    import json

    path = Path(path)
    scripted = to_torchscript(gan_or_generator, in_channels, optimize=optimize, layout=layout)
    extra = {METADATA_NAME: json.dumps(metadata)} if metadata is not None else {}
    with _quiet_jit():
        _save_atomically(path, lambda tmp: torch.jit.save(scripted, tmp, _extra_files=extra))
    return path


def read_metadata(path: str | Path) -> dict | None:
    """The metadata written with an exported scorer (threshold, channels, ...): the side file ``PATH.json`` that
    every export writes, else (TorchScript) the archive's :data:`METADATA_NAME`; None if there is neither."""
    import json

    path = Path(path)
    side = path.with_name(path.name + ".json")
    if side.is_file():
        return json.loads(side.read_text())
    if path.suffix != ".onnx":
        extra = {METADATA_NAME: ""}
        with _quiet_jit():
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        return json.loads(extra[METADATA_NAME]) if extra[METADATA_NAME] else None
    return None


def _save_atomically(path: Path, save) -> None:
    """``save(tmp)`` into a temporary file beside ``path``, then rename it; the temporary file is removed on every
    error (``KeyboardInterrupt`` included), and a ``path`` that is a folder is refused before any work."""
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file: give a file path such as model.ts", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- ONNX (optional: needs the onnx / onnxscript packages) ----------------------------------------------------------


def onnx_available() -> tuple[bool, str]:
    """``(True, "")`` if :func:`export_onnx` can run here, else ``(False, why)``."""
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    if missing:
        return False, "ONNX export needs the optional packages " + ", ".join(missing) + \
            "; install them with `pip install onnx onnxscript`"
    return True, ""


def export_onnx(gan_or_generator: Any, in_channels: int, path: str | Path, *, optimize: bool = False,
                opset: int | None = None) -> Path:
    """Write an ONNX scoring model (input ``images`` (N, C, 32, 32), output ``scores`` (N,), dynamic N).

    Needs the optional ``onnx`` and ``onnxscript`` packages (raises :class:`gankd.MissingDependencyError`, an
    ``ImportError`` and ``RuntimeError``, naming them if absent);
    run the file with e.g. ``onnxruntime``. Returns the path written.

    By default the graph is the generator's own layers (standard Conv / ConvTranspose / BatchNorm
    ops): ONNX runtimes fold batch norm and choose their own kernels, and the rewrites of
    ``optimize=True`` target PyTorch's CPU kernels (measured with onnxruntime: the plain graph
    scores the students 1.1-1.5x faster, the teacher 1.05-1.25x slower). With ``optimize=True``
    the rewritten graph is exported without the phase-domain tail, whose in-place zeroing becomes
    scatter ops in ONNX.
    """
    ok, why = onnx_available()
    if not ok:
        from gankd import MissingDependencyError

        raise MissingDependencyError(why)
    generator = _as_generator(gan_or_generator)
    _check_channels(generator, in_channels)
    generator = copy.deepcopy(generator).cpu()
    # ONNX has no memory layouts: the (N, C, H, W) graph, without layout permutes
    module = GanomalyScorer(generator, False, phase_tail=False).eval() if optimize else _EagerScorer(generator)
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file: give a file path such as model.onnx", str(path))
    example = _example_input(in_channels)
    kwargs: dict[str, Any] = {"input_names": ["images"], "output_names": ["scores"],
                              "dynamic_shapes": {"images": {0: torch.export.Dim("batch", min=1)}},
                              "dynamo": True, "external_data": False, "verbose": False}
    if opset is not None:
        kwargs["opset_version"] = opset
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's progress lines and deprecation notes
        program = torch.onnx.export(module, (example,), None, **kwargs)
    _save_atomically(path, program.save)
    return path


# --- from a saved model (what a CLI `export` command calls) ---------------------------------------------------------


def export_model_file(model_path: str | Path, out_path: str | Path, *, fmt: str | None = None,
                      optimize: bool | None = None, layout: str | None = None) -> dict:
    """Export the GAN saved at ``model_path`` (``model.pt``, a run folder, or a run's ``checkpoint.pt``).

    ``fmt``: ``"torchscript"`` or ``"onnx"``; by default from ``out_path``'s suffix (``.onnx`` ->
    ONNX, anything else TorchScript). ``optimize``: the rewritten graph (default: yes for TorchScript,
    no for ONNX, see :func:`export_onnx`). ``layout`` (rewritten TorchScript only): the graph's layout,
    by default :func:`default_layout`. Returns a small record (paths, format, layout, channels, widths, the
    model's calibrated ``threshold``), also written beside the export as ``OUT.json`` (``model.ts.json``), and,
    for TorchScript, inside the file (:func:`read_metadata`): the scorer returns scores; an image is novel when
    its score is greater than ``threshold``.
    """
    import json

    import gankd

    from .experiment import load_model  # imported here: only this entry point needs model files

    out_path = Path(out_path)
    fmt = fmt or ("onnx" if out_path.suffix == ".onnx" else "torchscript")
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"fmt must be one of {EXPORT_FORMATS}, got {fmt!r}")
    if optimize is None:
        optimize = fmt == "torchscript"
    if layout is not None and not (fmt == "torchscript" and optimize):
        raise ValueError("layout applies to the rewritten TorchScript graph only "
                         f"(here: format {fmt!r}, optimize={optimize})")
    if out_path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"is a folder, not a file: give a file path such as "
                                f"{out_path / 'model.ts'}", str(out_path))
    if fmt == "onnx":
        ok, why = onnx_available()
        if not ok:  # before loading anything
            from gankd import MissingDependencyError

            raise MissingDependencyError(why)
    gan, header = load_model(model_path)  # refuses NaN/Inf weights: their scores would all be NaN
    in_channels = int(gan.generator.in_channels)
    calibrated = header.get("threshold") or {}
    metadata = {"format": "gankd-ganomaly-scorer", "in_channels": in_channels, "image_size": IMAGE_SIZE,
                "input": f"float32 (N, {in_channels}, {IMAGE_SIZE}, {IMAGE_SIZE}) in [-1, 1]",
                "threshold": calibrated.get("value"), "target_fpr": calibrated.get("target_fpr"),
                "rule": "novel if score > threshold", "method": header.get("method"),
                "dataset": header.get("dataset"), "widths": list(gan.generator.widths)}
    if fmt == "onnx":
        export_onnx(gan, in_channels, out_path, optimize=optimize)
    else:
        if optimize:
            layout = layout or default_layout(gan.generator)
        export_torchscript(gan, in_channels, out_path, optimize=optimize, layout=layout, metadata=metadata)
    side = out_path.with_name(out_path.name + ".json")
    gankd.atomic_write_text(side, json.dumps(metadata, indent=1) + "\n")
    return {"source": str(model_path), "path": str(out_path), "format": fmt, "optimize": optimize,
            "layout": layout, "in_channels": in_channels, "widths": list(gan.generator.widths),
            "role": header.get("role"), "method": header.get("method"), "dataset": header.get("dataset"),
            "threshold": calibrated.get("value"), "metadata": str(side)}
