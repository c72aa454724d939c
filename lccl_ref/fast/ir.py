"""LLVM IR for the fast kernels: the helpers their Numba ``@intrinsic``\\ s are written with.

Where LLVM would not keep a block of work in registers, or would not vectorise a
loop, the kernels of :mod:`lccl_ref.fast` spell the vectors out in LLVM IR.  This
module holds what they share: the data pointers and vector type of array arguments
(:func:`array_lanes`), splats, vector pointers, the FMA intrinsic, the folded
BN-ReLU on a vector (:func:`pre_value`, the vector spelling of
``functional.batchnorm.affine_relu_value``), and three intrinsics callable from
Numba code: stack scratch (:func:`stack_ptr`), the CPU's cycle counter
(:func:`cycle_counter`) and a prefetch (:func:`prefetch_write`).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


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
    ``functional.batchnorm.affine_relu_value``); ``a``, ``b`` vectors like ``v``."""
    zero = ir.Constant(v.type, [0.0] * v.type.count)
    f = builder.fadd(builder.fmul(v, a), b)
    f = builder.select(builder.fcmp_unordered(">", f, zero), f, zero)  # ugt: NaN kept
    return builder.select(has_pre, f, v)


@intrinsic
def stack_ptr(typingctx, size, dtype):
    """Pointer to ``size`` (a literal int) stack slots of ``dtype``: scratch that LLVM can
    keep in registers (``np.empty`` allocates on the heap through Numba's runtime)."""
    if not isinstance(size, types.IntegerLiteral):
        return None
    n_slots = size.literal_value
    elem = dtype.dtype

    def codegen(context, builder, sig, args):
        slots = cgutils.alloca_once(builder, ir.ArrayType(context.get_value_type(elem), n_slots))
        zero = ir.Constant(ir.IntType(32), 0)
        return builder.gep(slots, [zero, zero])

    return types.CPointer(elem)(size, dtype), codegen


@intrinsic
def cycle_counter(typingctx):
    """The CPU's cycle counter (``llvm.readcyclecounter``: RDTSC on x86), for per-op times."""
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen


@intrinsic
def prefetch_write(typingctx, arr, k):
    """Ask for the cache line of ``arr[k]``, to be written (``llvm.prefetch``: on x86
    ``prefetchw``), without waiting for it."""
    def codegen(context, builder, sig, args):
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        data = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0]).data
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        ptr = builder.bitcast(builder.gep(data, [args[1]]), i8p)
        # write, keep in all cache levels, data cache
        builder.call(fn, [ptr, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(arr, k), codegen
