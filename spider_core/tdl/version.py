"""The spider-tdl ABI version and its compatibility rule (docs/abi.md §5)."""

from __future__ import annotations

from attrs import field, frozen
from attrs.validators import and_, ge, instance_of, lt

_u32 = and_(instance_of(int), ge(0), lt(2**32))


@frozen
class Version:
    """A ``#[repr(C)] struct Version { major, minor, patch: u32 }``."""

    major: int = field(validator=_u32)
    minor: int = field(validator=_u32)
    patch: int = field(validator=_u32)

    def is_compatible_with(self, package: Version) -> bool:
        """Whether an executor of this version may run ``package`` (spider's rule).

        Before 1.0 major and minor must match; from 1.0 on only major must. Patch never
        matters.
        """
        if self.major == 0:
            return package.major == 0 and package.minor == self.minor
        return package.major == self.major

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


#: The ABI version this host advertises: spider-tdl's workspace version ``0.1.0-dev``.
HOST_VERSION = Version(0, 1, 0)
