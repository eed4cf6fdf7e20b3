"""The contracts every block, stem and head follows, and the small layers they share.

Block contract (pycls-style): ``Block(w_in, w_out, stride, **params)``. ``w_in``/``w_out`` are
input/output channels, ``stride`` the spatial reduction of the block's first layer, and
``params`` the block's own options, declared as a frozen dataclass ``Params`` on the class and
validated on construction (an unknown or ill-typed param names the block, the param and what
is allowed).

Class facts with defaults here: ``strides``, ``layout``, ``stem_pre_act``, ``head_pre_act``
(see :class:`Block`); a subclass inherits its parent's.

Optional duck-typed hooks (timm-style), so a new block gets correct behaviour without edits
elsewhere:

* ``zero_init_last()``: zero the last BN scale of the residual branch (Goyal et al.), so the
  block starts as an identity;
* ``output_size(size)``: spatial size after the block (default ``ceil(size / stride)``);
* residual blocks merge branch and shortcut through a :class:`ResidualAdd` module, so
  diagnostics can hook its inputs to measure ``||F(x)|| / ||x||``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from archbench.errors import SpecError
from archbench.validation import is_positive_int, parse_params


@dataclasses.dataclass(frozen=True)
class NoParams:
    """Params of a component that takes none."""


class Component(nn.Module):
    """Base of blocks, stems and heads: parses ``self.params`` from keyword arguments."""

    Params: ClassVar[type] = NoParams
    kind: ClassVar[str] = "component"

    def _parse(self, name: str, params: dict[str, Any]) -> Any:
        return parse_params(f"{self.kind} {name!r}", self.Params, params)

    def fail(self, message: str) -> SpecError:
        """An error naming this component; ``raise self.fail("...")``."""
        return SpecError(f"{self.kind} {self._name()!r}: {message}")

    def _name(self) -> str:
        return getattr(type(self), "block_name", None) or getattr(
            type(self), "component_name", type(self).__name__
        )


class Block(Component):
    """A block: ``Block(w_in, w_out, stride, **params)``; maps (N, w_in, H, W) to
    (N, w_out, ceil(H/stride), ceil(W/stride)) unless it overrides :meth:`output_size`."""

    kind = "block"
    block_name: ClassVar[str] = ""
    # Strides the block supports; the registry-wide tests try each of them.
    strides: ClassVar[tuple[int, ...]] = (1, 2)
    # What the CIFAR layout families (``resnet_variant``, ``resnet_bottleneck_variant``) need
    # to know, read from the class so any block of the right shape (a plugin's too) fits:
    # ``layout`` "basic" (w_out is the stage width) or "bottleneck" (w_out is 4x the stage
    # width, param ``expansion``); None keeps a block out of those families.
    layout: ClassVar[str | None] = None
    # The block normalises its own input (BN-ReLU first): the stem ends in a bare conv.
    stem_pre_act: ClassVar[bool] = False
    # The block's output is not activated (no ReLU after the addition): the head adds BN-ReLU
    # before pooling (He et al. 2016, Sec. 4.1).
    head_pre_act: ClassVar[bool] = False

    def __init__(self, w_in: int, w_out: int, stride: int, **params: Any) -> None:
        super().__init__()
        for label, value in (("w_in", w_in), ("w_out", w_out), ("stride", stride)):
            if not is_positive_int(value):
                raise self.fail(f"{label} must be a positive integer, got {value!r}")
        if stride not in self.strides:
            raise self.fail(f"stride must be one of {self.strides}, got {stride}")
        self.w_in, self.w_out, self.stride = w_in, w_out, stride
        self.params = self._parse(self._name(), params)

    def output_size(self, size: int) -> int:
        return math.ceil(size / self.stride)


class Stem(Component):
    """A stem: ``Stem(in_channels, w_out, **params)``; reports its spatial ``output_size``."""

    kind = "stem"
    component_name: ClassVar[str] = ""

    def __init__(self, in_channels: int, w_out: int, **params: Any) -> None:
        super().__init__()
        self.in_channels, self.w_out = in_channels, w_out
        self.params = self._parse(self._name(), params)

    def output_size(self, size: int) -> int:
        raise NotImplementedError


class Head(Component):
    """A head: ``Head(w_in, num_classes, **params)``; maps features to logits."""

    kind = "head"
    component_name: ClassVar[str] = ""

    def __init__(self, w_in: int, num_classes: int, **params: Any) -> None:
        super().__init__()
        self.w_in, self.num_classes = w_in, num_classes
        self.params = self._parse(self._name(), params)


# Ops whose backward does not read their own output (BN saves its input and statistics, a
# conv its input and weight, a product its factors): adding the shortcut into such an output in
# place leaves every tensor autograd saved intact, as torchvision's ``out += identity``.
_ADD_INTO_SAFE = frozenset(
    {
        "NativeBatchNormBackward0",
        "CudnnBatchNormBackward0",
        "MiopenBatchNormBackward0",
        "ConvolutionBackward0",
        "MulBackward0",
    }
)


# torch >= 2.3; on older versions dynamo functionalises in-place ops anyway.
_compiling = getattr(torch.compiler, "is_compiling", None) or (lambda: False)


class ResidualAdd(nn.Module):
    """``shortcut_scale * shortcut + branch_scale * branch``.

    A module rather than a bare ``+`` so diagnostics can hook its inputs; with both scales 1
    (the default) it is a pure identity shortcut and adds nothing to the cost.

    In a training forward the sum is written into ``branch`` in place, as torchvision's
    ``out += identity`` (no new tensor to allocate and fill; with it a ResNet-50 training
    step runs exactly torchvision's operators, see benchmarks/), when nothing can tell:
    autograd is recording, ``branch`` comes straight from an op whose backward does not need
    its output (batch norm, convolution, multiplication by the scale), is not a view and has
    the sum's shape, dtype and device, the module has no forward hooks (a forward hook would
    see the sum in ``inputs[1]``; read the inputs with a forward *pre*-hook), and it is not
    being traced or compiled. Otherwise, and always with ``inplace=False``, it is out of
    place. So a block must not read ``branch`` after the merge (none does), and a hook that
    keeps the output of the branch's last layer sees the sum, as with torchvision.
    """

    def __init__(
        self, shortcut_scale: float = 1.0, branch_scale: float = 1.0, inplace: bool = True
    ) -> None:
        super().__init__()
        self.shortcut_scale = float(shortcut_scale)
        self.branch_scale = float(branch_scale)
        self.inplace = bool(inplace)

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        if self.shortcut_scale != 1.0:
            shortcut = shortcut * self.shortcut_scale
        if self.branch_scale != 1.0:
            branch = branch * self.branch_scale
        if self.inplace and self._can_add_into(shortcut, branch):
            return branch.add_(shortcut)
        return shortcut + branch

    def _can_add_into(self, shortcut: torch.Tensor, branch: torch.Tensor) -> bool:
        """Whether ``branch += shortcut`` is indistinguishable from ``shortcut + branch``."""
        if not (torch.is_grad_enabled() and branch.requires_grad) or shortcut is branch:
            return False  # inference: no speed-up worth a risk; x + x: keep x intact
        if torch.jit.is_tracing() or _compiling():
            return False  # keep traced graphs (fvcore) and compiled graphs out of place
        if self._forward_hooks or getattr(nn.modules.module, "_global_forward_hooks", None):
            return False
        return (
            type(branch.grad_fn).__name__ in _ADD_INTO_SAFE
            and not branch._is_view()
            and branch.shape == shortcut.shape
            and branch.dtype == shortcut.dtype
            and branch.device == shortcut.device
        )

    def extra_repr(self) -> str:
        text = f"shortcut_scale={self.shortcut_scale}, branch_scale={self.branch_scale}"
        return text if self.inplace else text + ", inplace=False"


def conv3x3(w_in: int, w_out: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(w_in, w_out, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(w_in: int, w_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(w_in, w_out, 1, stride=stride, bias=False)


class ConvBNAct(nn.Sequential):
    """conv (no bias) -> BN -> ReLU (``act=False`` leaves out the ReLU)."""

    def __init__(
        self,
        w_in: int,
        w_out: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] | str | None = None,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        if padding is None:
            k = (kernel, kernel) if isinstance(kernel, int) else kernel
            padding = (k[0] // 2, k[1] // 2)
        layers: list[nn.Module] = [
            nn.Conv2d(
                w_in, w_out, kernel, stride=stride, padding=padding, groups=groups, bias=False
            ),
            nn.BatchNorm2d(w_out),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
