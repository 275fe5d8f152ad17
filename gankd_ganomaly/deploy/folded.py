"""The optimized standard / channels-last scoring graph (:class:`GanomalyScorer`) and what every scorer shares.

Built from a generator's own layers, found by type (convolutions, batch norms, activations), never by position:
every eval-mode batch norm is folded into the convolution before it; the encoder's last 4x4 convolution over a
4x4 map and the decoder's first 4x4 transposed convolution of a 1x1 map are the matrix products they are; each
stride-2 transposed convolution takes the fastest of three equivalent forms for its width; the decoder's last
layer and the second encoder's first convolution run on the four phases of x_hat (:class:`_PhaseTail`).
Every image size the networks take (32, 64, 128) is rewritten the same way: GANomaly's pyramid blocks of the 64x64
and 128x128 networks are more stride-2 blocks of the same kind.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gankd.functional import squared_error

from ..networks import Decoder, Encoder, GanomalyGenerator


def check_scorer_input(images: torch.Tensor, in_channels: int, image_size: int = 32) -> None:
    """Raise ``ValueError`` naming the expected ``(N, C, S, S)`` float32 input (S = the model's ``image_size``);
    compiled into every exported scorer (TorchScript shows it as the last line of its ``torch.jit.Error``), so a
    wrong input fails at the door, not deep inside the graph, and an image of another size (64x64 for a 32x32
    model) is refused instead of silently scored."""
    size = str(image_size)
    if images.dim() != 4 or images.size(1) != in_channels or images.size(2) != image_size \
            or images.size(3) != image_size:
        raise ValueError("expected images of shape (N, " + str(in_channels) + ", " + size + ", " + size
                         + ") in [-1, 1], got (" + ", ".join([str(d) for d in images.shape]) + ")")
    if images.dtype != torch.float32:
        raise ValueError("expected float32 images in [-1, 1] of shape (N, " + str(in_channels) + ", " + size + ", "
                         + size + "); convert them first, e.g. images.float() / 127.5 - 1 for 0-255 values")



def _as_generator(gan_or_generator: Any) -> GanomalyGenerator:
    generator = getattr(gan_or_generator, "generator", gan_or_generator)
    if not isinstance(generator, GanomalyGenerator):
        raise TypeError(f"expected a GanomalyGenerator or a GAN holding one, got {type(gan_or_generator).__name__}")
    return generator



# --- the inference graph ----------------------------------------------------------------------------------------


def _encoder_layers(encoder: Encoder) -> tuple[list[nn.Conv2d], list[nn.BatchNorm2d], list[nn.LeakyReLU]]:
    """An :class:`Encoder`'s feature layers by type, in order: its convolutions, batch norms and LeakyReLUs (3 of
    each at 32x32, one more per pyramid block at 64x64 and 128x128)."""
    layers = list(encoder.features.modules())
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    bns = [m for m in layers if isinstance(m, nn.BatchNorm2d)]
    acts = [m for m in layers if isinstance(m, nn.LeakyReLU)]
    if len(convs) < 3 or not len(convs) == len(bns) == len(acts):
        raise ValueError("expected an Encoder of 3 or more (Conv2d, BatchNorm2d, LeakyReLU) blocks")
    return convs, bns, acts


def _decoder_layers(decoder: Decoder) -> tuple[list[nn.ConvTranspose2d], list[nn.BatchNorm2d]]:
    """A :class:`Decoder`'s layers by type, in order: its transposed convolutions (4 at 32x32, one more per pyramid
    block; the last one the output layer, followed by tanh) and the batch norms between them (one fewer)."""
    layers = [m for m in decoder.modules() if not list(m.children())]  # the leaf layers, in order
    deconvs = [m for m in layers if isinstance(m, nn.ConvTranspose2d)]
    bns = [m for m in layers if isinstance(m, nn.BatchNorm2d)]
    if len(deconvs) < 4 or len(bns) != len(deconvs) - 1 or not isinstance(layers[-1], nn.Tanh):
        raise ValueError("expected a Decoder of 3 or more (ConvTranspose2d, BatchNorm2d, ReLU) + ConvTranspose2d, Tanh")
    return deconvs, bns


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as ``y = x * scale + shift`` per channel (float64 for exact folding)."""
    var = bn.running_var.double()
    scale = bn.weight.double() / torch.sqrt(var + bn.eps)
    shift = bn.bias.double() - bn.running_mean.double() * scale
    return scale, shift


def _layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    t = t.detach().float()
    return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t.contiguous()


class _StridedConv(nn.Module):
    """One folded encoder block: a stride-2 4x4 convolution with bias (the batch norm), then LeakyReLU."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, slope: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu_(F.conv2d(x, self.weight, self.bias, 2, 1), self.slope)


class _FoldedEncoder(nn.Module):
    """An :class:`Encoder` with its batch norms folded: its strided convs (+bias, LeakyReLU; 3 at 32x32, one more
    per pyramid block) and a matrix head. ``w0``/``b0`` are the first block's; ``blocks`` the others."""

    def __init__(self, encoder: Encoder, channels_last: bool) -> None:
        super().__init__()
        convs, bns, acts = _encoder_layers(encoder)
        self.slope = float(acts[0].negative_slope)
        self.channels_last = channels_last
        folded = []
        for conv, bn in zip(convs, bns):
            if conv.bias is not None or conv.stride != (2, 2) or conv.padding != (1, 1):
                raise ValueError("expected bias-free 4x4 convolutions with stride 2 and padding 1")
            scale, shift = _bn_scale_shift(bn)
            folded.append((_layout(conv.weight.double() * scale[:, None, None, None], channels_last),
                           _layout(shift, False)))
        self.register_buffer("w0", folded[0][0])
        self.register_buffer("b0", folded[0][1])
        self.blocks = nn.ModuleList(_StridedConv(w, b, self.slope) for w, b in folded[1:])
        # head: a 4x4 conv over the 4x4 map, no padding = one matrix product over the flattened map,
        # flattened in the order the map is stored (c, h, w) or, channels_last, (h, w, c)
        head = encoder.head.weight.detach()  # (out, c3, 4, 4)
        self.register_buffer("head", _layout((head.permute(0, 2, 3, 1) if channels_last else head).flatten(1), False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_first(F.leaky_relu_(F.conv2d(x, self.w0, self.b0, 2, 1), self.slope))

    def after_first(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder from its second block on, given the first block's output."""
        for block in self.blocks:
            x = block(x)
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
    run on the four 16x16 phases of the 32x32 image x_hat instead of on the image (the S/2 x S/2 phases of an
    S x S image at the other sizes; 17 below is S/2 + 1).

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
        half = h.size(2)  # S/2: 16 for a 32x32 image
        s = torch.sigmoid_(F.conv2d(F.pad(h, (1, 1, 1, 1)), self.up))  # (N, 4C, 17, 17): (x_hat + 1) / 2 in phases
        p = s.unflatten(1, [self.c, 2, 2])  # a view (N, C, a, b, 17, 17)
        p[:, :, 1, :, 0].fill_(0.5)  # phase a=1, row 0 stands for image row -1: the encoder's zero padding
        p[:, :, 0, :, half].fill_(0.5)  # phase a=0, row 16 stands for image row 32
        p[:, :, :, 1, :, 0].fill_(0.5)
        p[:, :, :, 0, :, half].fill_(0.5)
        return F.leaky_relu_(F.conv2d(s, self.down, self.bias, 1, 0), self.slope)


def _fold_decoder(decoder: Decoder) -> tuple[tuple[torch.Tensor, torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
    """A :class:`Decoder`'s layers with their batch norms folded (float64).

    Returns ``((w, b), [(w1, b1), (w2, b2), (w3, b3)])``: the first transposed conv (latent, c3, 4, 4) and its
    per-channel bias (c3,), then the stride-2 transposed convs (Cin, Cout, 4, 4) with biases (Cout,) (three at
    32x32, one more per pyramid block; the last one's bias is zero, no batch norm: tanh follows it).
    """
    deconvs, bns = _decoder_layers(decoder)
    for d in deconvs[1:]:
        if d.bias is not None or d.stride != (2, 2) or d.padding != (1, 1) or d.kernel_size != (4, 4):
            raise ValueError("expected bias-free 4x4 transposed convolutions with stride 2 and padding 1")
    folded = []
    for deconv, bn in zip(deconvs, bns):
        scale, shift = _bn_scale_shift(bn)
        folded.append((deconv.weight.detach().double() * scale[None, :, None, None], shift))
    last = deconvs[-1].weight.detach().double()
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
        # the stride-2 layers before the output layer (2 at 32x32), then the output layer (tanh)
        self.ups = nn.ModuleList(_deconv_module(w, b, channels_last, False) for w, b in folded[:-1])
        self.up_last = _deconv_module(folded[-1][0], folded[-1][1], channels_last, True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up_last(self.up2_output(z))  # each layer applies its activation (ReLU, ..., tanh)

    def up2_output(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder up to the output layer: the (N, c1, S/2, S/2) map the last layer takes (16x16 at 32x32)."""
        x = torch.relu_(F.linear(z, self.w0, self.b0))
        if self.channels_last:
            x = x.view(z.shape[0], 4, 4, self.c3).permute(0, 3, 1, 2)
        else:
            x = x.view(z.shape[0], self.c3, 4, 4)
        for up in self.ups:
            x = up(x)
        return x


class GanomalyScorer(nn.Module):
    """Inference-only GANomaly scoring graph: images (N, C, S, S) -> scores (N,) (mean of (z1 - z2)^2), S the
    generator's image size (32, 64 or 128).

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
                convs, bns, _ = _encoder_layers(generator.encoder2)
                conv, bn = convs[0], bns[0]  # the second encoder's first block
                scale, shift = _bn_scale_shift(bn)
                output_deconv = _decoder_layers(generator.decoder)[0][-1]  # the decoder's last layer
                self.tail: nn.Module = _PhaseTail(output_deconv.weight.double(),
                                                  conv.weight.double() * scale[:, None, None, None], shift,
                                                  self.encoder2.slope, channels_last)
            else:
                self.tail = nn.Identity()
        self.in_channels = int(generator.in_channels)
        self.image_size = int(getattr(generator, "image_size", 32))
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_scorer_input(images, self.in_channels, self.image_size)
        z1 = self.encoder1(images)  # channels_last weights make the convs run channels_last
        if self.phase_tail:
            z2 = self.encoder2.after_first(self.tail(self.decoder.up2_output(z1)))
        else:
            z2 = self.encoder2(self.decoder(z1))
        return squared_error(z1, z2)
