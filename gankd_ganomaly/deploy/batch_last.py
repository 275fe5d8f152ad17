"""The batch-last scoring graph (:class:`BatchLastScorer`): the fastest on CPU for networks at most 8 channels wide."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gankd.functional import squared_error

from ..networks import GanomalyGenerator
from .folded import GanomalyScorer, _PhaseTail, _as_generator, _fold_decoder, _layout, _phase_weight, check_scorer_input


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


class _BatchLastTaps(nn.Module):
    """The 2x2 taps (4, O, C) and bias (O, 1) of one batch-last layer, and its output width (a holder: looping over
    a ``ModuleList`` of these is how TorchScript runs the 64x64 and 128x128 networks' extra blocks)."""

    def __init__(self, taps: torch.Tensor, bias: torch.Tensor, channels: int = 0) -> None:
        super().__init__()
        self.register_buffer("taps", taps)
        self.register_buffer("bias", bias)
        self.channels = channels


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
            for name, encoder in (("e1", plain.encoder1), ("e2", plain.encoder2)):
                # (w, b) of every block; the second encoder's first conv lives in the tail
                layers = [(encoder.w0, encoder.b0), *((blk.weight, blk.bias) for blk in encoder.blocks)]
                if name == "e1":
                    self.register_buffer("e1_w0", _taps_4x4_stride2(encoder.w0))
                    self.register_buffer("e1_b0", encoder.b0.unsqueeze(1).contiguous())
                setattr(self, f"{name}_blocks", nn.ModuleList(
                    _BatchLastTaps(_taps_4x4_stride2(w), b.unsqueeze(1).contiguous()) for w, b in layers[1:]))
                self.register_buffer(f"{name}_head", encoder.head)  # (latent, c3*16), columns (c, h, w)
            self.register_buffer("d_w0", plain.decoder.w0)  # (c3*16, latent), rows (c, h, w)
            self.register_buffer("d_b0", plain.decoder.b0.unsqueeze(1).contiguous())
            ups = _fold_decoder(generator.decoder)[1][:-1]  # the stride-2 layers before the output layer
            self.ups = nn.ModuleList(
                _BatchLastTaps(_taps_2x2(_layout(_phase_weight(w, phase_major=True), False)),
                      _layout(b.repeat(4).unsqueeze(1), False), int(w.shape[1])) for w, b in ups)
            tail = plain.tail
            assert isinstance(tail, _PhaseTail)
            self.register_buffer("tail_up", _taps_2x2(tail.up))  # outputs (c, a, b)
            self.register_buffer("tail_down", _taps_2x2(tail.down))
            self.register_buffer("tail_b", tail.bias.unsqueeze(1).contiguous())
        self.slope, self.c3 = plain.encoder1.slope, plain.decoder.c3
        self.in_channels, self.image_size = int(generator.in_channels), plain.image_size
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
        check_scorer_input(images, self.in_channels, self.image_size)
        n, c, size = images.shape[0], images.shape[1], images.shape[2]
        # (N, C*H*W) -> (C*H*W, N) through PyTorch's blocked 2-d transpose (2x faster than a 4-d permute copy)
        flat = torch.empty([c * size * size, n], dtype=images.dtype, device=images.device)
        flat.copy_(images.reshape(n, c * size * size).t())
        h = self._down(flat.view(c, size, size, n), self.e1_w0, self.e1_b0)
        for block in self.e1_blocks:
            h = self._down(h, block.taps, block.bias)
        z1 = torch.mm(self.e1_head, h.reshape(-1, n))  # (latent, N)
        d = _pad_batch_last(torch.relu_(torch.addmm(self.d_b0, self.d_w0, z1)).view(self.c3, 4, 4, n))
        for up in self.ups:
            d = self._up(d, up.taps, up.bias, up.channels)
        s = torch.sigmoid_(_conv2x2_batch_last(d, self.tail_up, None))  # (x_hat + 1) / 2 in phases
        half = size // 2
        p = s.unflatten(0, [c, 2, 2])  # (c, a, b, 17, 17, N)
        p[:, 1, :, 0].fill_(0.5)  # the encoder's zero padding, as in _PhaseTail
        p[:, 0, :, half].fill_(0.5)
        p[:, :, 1, :, 0].fill_(0.5)
        p[:, :, 0, :, half].fill_(0.5)
        h = F.leaky_relu_(_conv2x2_batch_last(s, self.tail_down, self.tail_b), self.slope)
        for block in self.e2_blocks:
            h = self._down(h, block.taps, block.bias)
        z2 = torch.mm(self.e2_head, h.reshape(-1, n))
        return squared_error(z1, z2, batch_dim=-1)
