// The PTX instructions of cuda/ptx.cuh on the fiber emulator: what tests/emu/fake/cuda/ptx.cuh
// calls. Written from the PTX ISA's descriptions (fragment tables in the header of cuda/ptx.cuh):
//
// - ldmatrix and mma.sync are warp collectives: every lane publishes its operands, and each lane
//   computes its own result inside the warp's lock step (emu::warp_collective), so a lane's
//   registers come from the other lanes' addresses and fragments exactly as the tables say.
// - mma.sync computes every product exactly and sums in double, rounding once to float. The
//   tensor cores sum differently (in a wider-than-float but not exact accumulator, in an
//   unspecified order, with denormal inputs possibly flushed), so a kernel's result is checked
//   with a tolerance, never bit for bit against the hardware.
// - The conversions (cvt.rna.tf32.f32, cvt.rn.bf16.f32) are exact bit manipulations.
//
// cp.async lives in the scheduler (emu::cp_async_copy), since its state is per thread.
#pragma once

#include <cstdint>
#include <span>

namespace emu {

// ldmatrix.sync.aligned.m8n8.x{matrices}[.trans].shared.b16 into regs[0..matrices-1]; `row` is the
// calling lane's row address (used only by lanes 0..8*matrices-1, which must give 16-byte
// aligned addresses). Counts the instruction and its bank conflicts in Stats.
void ldmatrix(uint32_t* regs, int matrices, bool trans, const void* row);

// d = a * b + c for the calling lane's fragments: mma.sync.aligned.m16n8k8.row.col.f32.tf32
// (a, b: TF32 bit patterns, the low 13 mantissa bits ignored) and m16n8k16 with bf16 inputs (two
// per register, the lower k in the low half). d may alias c.
void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]);
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]);

// cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 mantissa bits; the low 13 bits of
// the result are zero. Infinities and NaNs are returned unchanged.
uint32_t cvt_rna_tf32(float x);
// cvt.rn.bf16.f32: round to nearest, ties to even (overflow gives infinity); a NaN becomes the
// quiet NaN 0x7fc0 with x's sign.
uint16_t cvt_rn_bf16(float x);

// How many extra shared-memory wavefronts one 8-row phase of ldmatrix needs (0 when free of bank
// conflicts) for the row addresses rows[0..7]: 32 banks of 4 bytes, a 16-byte row covers 4
// consecutive banks, rows at the same address are one broadcast access. Exposed for tests.
int ldmatrix_phase_conflicts(std::span<const void* const, 8> rows);

}  // namespace emu
