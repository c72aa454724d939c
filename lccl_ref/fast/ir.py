"""Helpers of the kernels written as LLVM IR (Numba ``@intrinsic``\\ s): the vectors
that :mod:`.cheap`, :mod:`.fused` and :mod:`.vector` spell out where LLVM would not
keep a block of work in registers, or would not vectorise it."""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils


def array_lanes(context, builder, signature, args, which):
    """Codegen prologue: the data pointers of the array arguments ``which`` (indices),
    the first one's LLVM float type, its size and the lanes of a 256-bit vector of it."""
    ptrs = [cgutils.create_struct_proxy(signature.args[k])(context, builder, value=args[k]).data
            for k in which]
    fty = context.get_value_type(signature.args[which[0]].dtype)
    size = 4 if isinstance(fty, ir.FloatType) else 8
    return ptrs, fty, size, 32 // size


def splat(builder, vty, s):
    """The vector of type ``vty`` with every lane ``s``."""
    i32 = ir.IntType(32)
    undef = ir.Constant(vty, ir.Undefined)
    return builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(i32, 0)), undef,
                                  ir.Constant(ir.VectorType(i32, vty.count), [0] * vty.count))


def vector_ptr(builder, ptr, k, vty):
    """``&ptr[k]`` as a pointer to a vector of type ``vty``."""
    return builder.bitcast(builder.gep(ptr, [k]), vty.as_pointer())


def fma(builder, vty):
    """The ``llvm.fma`` intrinsic for vectors of type ``vty`` (one rounding per step)."""
    size = 4 if isinstance(vty.element, ir.FloatType) else 8
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                          f"llvm.fma.v{vty.count}f{8 * size}")


def pre_value(builder, v, a, b, has_pre):
    """``max(v * a + b, 0)`` (NaN for NaN) if the i1 ``has_pre``, else ``v``: the folded
    BN-ReLU of the copies, a multiply and an add (not an FMA: the rounding of
    ``F.batchnorm.affine_relu_unchecked``); ``a``, ``b`` vectors like ``v``."""
    zero = ir.Constant(v.type, [0.0] * v.type.count)
    f = builder.fadd(builder.fmul(v, a), b)
    f = builder.select(builder.fcmp_unordered(">", f, zero), f, zero)  # ugt: NaN kept
    return builder.select(has_pre, f, v)
