"""complex_number: complex arithmetic as a Python task package.

The Python counterpart of spider's examples/huntsman/complex. On the wire a Complex is a map
{"re": ..., "im": ...}; an array [re, im] (how Rust's rmp-serde writes the struct) is accepted too.
"""

from attrs import frozen

from spider_core.sdk import Package, TaskContext, TdlError

package = Package("complex_number")


@frozen
class Complex:
    re: float
    im: float


@package.task
def add(ctx: TaskContext, a: Complex, b: Complex) -> Complex:
    return Complex(a.re + b.re, a.im + b.im)


@package.task
def sub(ctx: TaskContext, a: Complex, b: Complex) -> Complex:
    return Complex(a.re - b.re, a.im - b.im)


@package.task
def mul(ctx: TaskContext, a: Complex, b: Complex) -> Complex:
    return Complex(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re)


@package.task
def div(ctx: TaskContext, a: Complex, b: Complex) -> Complex:
    norm = b.re * b.re + b.im * b.im
    if norm == 0:
        raise TdlError("ExecutionError", "div: division by zero")
    return Complex((a.re * b.re + a.im * b.im) / norm, (a.im * b.re - a.re * b.im) / norm)
