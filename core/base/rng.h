// Deterministic random numbers, identical on every platform and thread count.
//
// Rng is a small sequential generator (xoshiro256**) whose whole state is four integers, so a
// checkpoint can save and restore it exactly. For work split across threads or GPU blocks
// (dropout masks, per-image augmentation) use the counter-based hash functions instead: the value
// for element i depends only on (seed, i), never on which thread computed it.
#pragma once

#include <array>
#include <cstdint>

namespace convnet {

// A 64-bit mix of (seed, counter): splitmix64 finalizer applied twice. Usable on host and device.
constexpr uint64_t hash64(uint64_t seed, uint64_t counter) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (counter + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Uniform float in [0, 1) from the top 24 bits of hash64(seed, counter).
constexpr float hash_uniform(uint64_t seed, uint64_t counter) {
  return static_cast<float>(hash64(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

class Rng {
 public:
  using State = std::array<uint64_t, 4>;
  explicit Rng(uint64_t seed = 0) { reseed(seed); }
  void reseed(uint64_t seed);

  uint64_t next_u64();
  double uniform();                      // [0, 1), 53 bits
  float uniform(float low, float high);  // [low, high)
  double normal();                       // standard normal (Box-Muller, no cached pair)
  uint64_t below(uint64_t bound);        // uniform integer in [0, bound), unbiased

  const State& state() const { return state_; }
  void set_state(const State& state) { state_ = state; }

 private:
  State state_{};
};

}  // namespace convnet
