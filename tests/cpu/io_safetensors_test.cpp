// safetensors reader and writer: round trips, the on-disk layout, and rejection of damaged or
// malformed files with messages that name the file and the tensor.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>

#include "core/base/error.h"
#include "core/io/safetensors.h"
#include "tests/common/test_util.h"

namespace convnet {
namespace {

using testing::read_file;
using testing::TempDir;
using testing::write_file;

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (size_t i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A file as a foreign writer might produce it: no padding, no checksum unless given.
std::string foreign_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

template <class T>
std::string raw(std::initializer_list<T> values) {
  std::string s(values.size() * sizeof(T), '\0');
  std::memcpy(s.data(), std::data(values), s.size());
  return s;
}

std::string tensor_bytes(const Tensor& t) {
  return {static_cast<const char*>(t.raw()), t.bytes()};
}

Tensor random_raw(Shape shape, DType dtype, Rng& rng) {
  Tensor t(std::move(shape), dtype);
  auto* p = static_cast<uint8_t*>(t.raw());
  for (size_t i = 0; i < t.bytes(); ++i) p[i] = static_cast<uint8_t>(rng.below(256));
  return t;
}

// Runs `fn`, expects a convnet::Error whose message contains every one of `parts`.
template <class Fn>
void expect_error(Fn fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& part : parts)
      EXPECT_NE(message.find(part), std::string::npos) << message << "\nlacks: " << part;
  }
}

void expect_read_error(const std::string& path, std::initializer_list<std::string> parts) {
  expect_error([&] { read_safetensors(path); }, parts);
}

TEST(Fnv1a64, KnownVectors) {
  EXPECT_EQ(fnv1a64("", 0), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a", 1), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar", 6), 0x85944171f73967e8ull);
  // Chaining over pieces equals hashing the concatenation.
  EXPECT_EQ(fnv1a64("bar", 3, fnv1a64("foo", 3)), 0x85944171f73967e8ull);
}

TEST(Safetensors, RoundTripSeveralDtypes) {
  TempDir dir;
  Rng rng(1);
  std::vector<NamedTensor> tensors = {
      {"conv.weight", testing::random_tensor({4, 3, 3, 2}, rng)},
      {"half", random_raw({2, 5}, DType::f16, rng)},
      {"brain", random_raw({7}, DType::bf16, rng)},
      {"labels", testing::random_labels(6, 1000, rng)},
      {"bytes", random_raw({3, 3}, DType::u8, rng)},
      {"scalar", Tensor::from_vector({}, {2.5f})},
      {"empty", Tensor({0, 3})},
      {"after_empty", testing::random_tensor({3}, rng)},
  };
  const std::map<std::string, std::string> metadata = {{"epoch", "3"}, {"config", "model: vgg11\n"}};
  const std::string path = dir.file("a.safetensors");
  write_safetensors(path, tensors, metadata);

  const SafetensorsFile file = read_safetensors(path);
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const NamedTensor& got = file.tensors[i];
    EXPECT_EQ(got.name, tensors[i].name);
    EXPECT_EQ(got.tensor.dtype(), tensors[i].tensor.dtype()) << got.name;
    EXPECT_EQ(got.tensor.shape(), tensors[i].tensor.shape()) << got.name;
    EXPECT_EQ(tensor_bytes(got.tensor), tensor_bytes(tensors[i].tensor)) << got.name;
    EXPECT_FALSE(got.as_i64);
  }
  EXPECT_EQ(file.metadata.at("epoch"), "3");
  EXPECT_EQ(file.metadata.at("config"), "model: vgg11\n");
  EXPECT_EQ(file.metadata.at("convnet.file_checksum").size(), 16u);
  EXPECT_EQ(file.metadata.size(), 3u);
  EXPECT_EQ(file.checksum, ChecksumCoverage::header_and_data);
  ASSERT_NE(file.find("scalar"), nullptr);
  EXPECT_EQ(file.find("scalar")->rank(), 0);
  EXPECT_EQ(file.find("scalar")->f32()[0], 2.5f);
  EXPECT_EQ(file.find("missing"), nullptr);
}

TEST(Safetensors, ByteLayoutMatchesSpec) {
  TempDir dir;
  Rng rng(2);
  // Not in alphabetical order: the data must follow the given order anyway.
  std::vector<NamedTensor> tensors = {{"z", testing::random_tensor({3}, rng)},
                                      {"a", random_raw({5}, DType::u8, rng)},
                                      {"m", testing::random_labels(2, 50, rng)}};
  const std::string path = dir.file("layout.safetensors");
  write_safetensors(path, tensors, {{"k", "v"}});
  const std::string bytes = read_file(path);

  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  ASSERT_LE(8 + n, bytes.size());
  EXPECT_EQ((8 + n) % 8, 0u) << "data section must start 8-byte aligned";
  const std::string header_text = bytes.substr(8, n);
  EXPECT_EQ(header_text.front(), '{');
  const size_t last = header_text.find_last_not_of(' ');
  EXPECT_EQ(header_text[last], '}');
  EXPECT_LT(header_text.size() - last - 1, 8u) << "padding is fewer than 8 spaces";

  const auto header = nlohmann::json::parse(header_text);
  ASSERT_TRUE(header.is_object());
  EXPECT_EQ(header.size(), 4u);
  EXPECT_EQ(header["__metadata__"]["k"], "v");
  const std::string data = bytes.substr(8 + n);
  // The checksum: the canonical header (sorted keys, compact, without the checksum), then the data.
  const std::string canonical =
      R"({"__metadata__":{"k":"v"},"a":{"data_offsets":[12,17],"dtype":"U8","shape":[5]},)"
      R"("m":{"data_offsets":[17,25],"dtype":"I32","shape":[2]},"z":{"data_offsets":[0,12],"dtype":"F32","shape":[3]}})";
  EXPECT_EQ(header["__metadata__"]["convnet.file_checksum"],
            fmt::format("{:016x}", fnv1a64(data.data(), data.size(), fnv1a64(canonical.data(), canonical.size()))));

  uint64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    const auto& entry = header[t.name];
    EXPECT_EQ(entry["dtype"], dtype_name(t.tensor.dtype()));
    EXPECT_EQ(entry["shape"].get<std::vector<int64_t>>(), t.tensor.shape());
    const auto offsets = entry["data_offsets"].get<std::vector<uint64_t>>();
    ASSERT_EQ(offsets.size(), 2u);
    EXPECT_EQ(offsets[0], offset) << t.name;
    EXPECT_EQ(offsets[1], offset + t.tensor.bytes()) << t.name;
    EXPECT_EQ(data.substr(offsets[0], offsets[1] - offsets[0]), tensor_bytes(t.tensor)) << t.name;
    offset = offsets[1];
  }
  EXPECT_EQ(offset, data.size());
}

TEST(Safetensors, WritesI64AndNarrowsOnRead) {
  TempDir dir;
  Tensor counts({3}, DType::i32);
  counts.data<int32_t>()[0] = 391;
  counts.data<int32_t>()[1] = -7;
  counts.data<int32_t>()[2] = 2147483647;
  const std::string path = dir.file("i64.safetensors");
  write_safetensors(path, {{"bn.num_batches_tracked", counts, true}}, {});

  const std::string bytes = read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["bn.num_batches_tracked"]["dtype"], "I64");
  EXPECT_EQ(bytes.substr(8 + n), raw<int64_t>({391, -7, 2147483647}));

  const SafetensorsFile file = read_safetensors(path);
  ASSERT_EQ(file.tensors.size(), 1u);
  EXPECT_TRUE(file.tensors[0].as_i64);
  EXPECT_EQ(file.tensors[0].tensor.dtype(), DType::i32);
  const int32_t* v = file.tensors[0].tensor.data<int32_t>();
  EXPECT_EQ(v[0], 391);
  EXPECT_EQ(v[1], -7);
  EXPECT_EQ(v[2], 2147483647);
}

TEST(Safetensors, I64OutOfI32RangeIsAnError) {
  TempDir dir;
  const std::string path = dir.file("big.safetensors");
  write_file(path, foreign_file(R"({"steps":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})",
                                raw<int64_t>({5, int64_t{1} << 40})));
  expect_read_error(path, {path, "'steps'", "1099511627776", "I32"});
}

TEST(Safetensors, ForeignFileWithoutChecksumReadsInOffsetOrder) {
  TempDir dir;
  const std::string path = dir.file("foreign.safetensors");
  // Keys out of offset order, no metadata, header length not a multiple of 8, an I64 scalar.
  const std::string header =
      R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
      R"( "a":{"shape":[],"dtype":"I64","data_offsets":[0,8]}, "e":{"dtype":"U8","shape":[0],"data_offsets":[16,16]}})";
  ASSERT_NE(header.size() % 8, 0u);
  write_file(path, foreign_file(header, raw<int64_t>({12}) + raw<float>({1.5f, -3.0f})));
  const SafetensorsFile file = read_safetensors(path);
  ASSERT_EQ(file.tensors.size(), 3u);
  EXPECT_EQ(file.tensors[0].name, "a");
  EXPECT_EQ(file.tensors[1].name, "b");
  EXPECT_EQ(file.tensors[2].name, "e");
  EXPECT_EQ(file.tensors[0].tensor.data<int32_t>()[0], 12);
  EXPECT_EQ(file.tensors[1].tensor.to_vector(), (std::vector<float>{1.5f, -3.0f}));
  EXPECT_EQ(file.tensors[2].tensor.numel(), 0);
  EXPECT_TRUE(file.metadata.empty());
}

TEST(Safetensors, CallerChecksumIsReplaced) {
  TempDir dir;
  Rng rng(3);
  const std::string path = dir.file("c.safetensors");
  write_safetensors(path, {{"w", testing::random_tensor({4}, rng)}},
                    {{"convnet.file_checksum", "0000000000000000"}, {"convnet.checksum", "0000000000000000"}});
  const SafetensorsFile file = read_safetensors(path);  // would throw if a bogus value were kept
  EXPECT_NE(file.metadata.at("convnet.file_checksum"), "0000000000000000");
  EXPECT_EQ(file.metadata.count("convnet.checksum"), 0u);
}

TEST(Safetensors, OverwritesExistingFile) {
  TempDir dir;
  Rng rng(4);
  const std::string path = dir.file("o.safetensors");
  write_safetensors(path, {{"old", testing::random_tensor({100}, rng)}}, {});
  write_safetensors(path, {{"new", testing::random_tensor({2}, rng)}}, {});
  const SafetensorsFile file = read_safetensors(path);
  ASSERT_EQ(file.tensors.size(), 1u);
  EXPECT_EQ(file.tensors[0].name, "new");
}

TEST(Safetensors, TruncationAtAnyPointIsAnError) {
  TempDir dir;
  Rng rng(5);
  const std::string good = dir.file("good.safetensors");
  write_safetensors(good, {{"w", testing::random_tensor({16}, rng)}, {"b", testing::random_tensor({4}, rng)}}, {});
  const std::string bytes = read_file(good);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const std::string path = dir.file("cut.safetensors");
  for (size_t cut :
       {size_t{0}, size_t{3}, size_t{7}, size_t{8}, size_t{12}, static_cast<size_t>(8 + n / 2),
        static_cast<size_t>(8 + n - 1), static_cast<size_t>(8 + n), static_cast<size_t>(8 + n + 5), bytes.size() - 1}) {
    SCOPED_TRACE(cut);
    write_file(path, bytes.substr(0, cut));
    expect_read_error(path, {"checkpoint '" + path + "'"});
  }
  write_file(path, bytes.substr(0, 5));
  expect_read_error(path, {"shorter than the 8-byte"});
  write_file(path, bytes.substr(0, 8 + n / 2));
  expect_read_error(path, {"exceeds", "truncated"});
  write_file(path, bytes.substr(0, bytes.size() - 1));
  expect_read_error(path, {"'b'", "past the"});
}

TEST(Safetensors, BitFlipInDataIsAChecksumError) {
  TempDir dir;
  Rng rng(6);
  const std::string path = dir.file("flip.safetensors");
  write_safetensors(path, {{"w", testing::random_tensor({32}, rng)}, {"s", random_raw({9}, DType::u8, rng)}}, {});
  const std::string bytes = read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const size_t data_begin = 8 + n;
  for (size_t pos : {data_begin, data_begin + 37, bytes.size() - 1}) {
    for (int bit : {0, 7}) {
      std::string flipped = bytes;
      flipped[pos] = static_cast<char>(flipped[pos] ^ (1 << bit));
      write_file(path, flipped);
      expect_read_error(path, {"checkpoint '" + path + "'", "checksum mismatch: header or data is corrupt"});
    }
  }
}

// The header as JSON and the data section of a file.
std::pair<nlohmann::ordered_json, std::string> split_file(const std::string& bytes) {
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return {nlohmann::ordered_json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

TEST(Safetensors, ChangedMetadataOrEntryIsAChecksumError) {
  TempDir dir;
  Rng rng(16);
  const std::string path = dir.file("h.safetensors");
  write_safetensors(path, {{"w", testing::random_tensor({4}, rng)}, {"v", testing::random_tensor({2, 2}, rng)}},
                    {{"convnet.step", "10"}});
  const auto [header, data] = split_file(read_file(path));
  const auto edit_and_read = [&, &header = header,
                              &data = data](const std::function<void(nlohmann::ordered_json&)>& edit) {
    nlohmann::ordered_json h = header;
    edit(h);
    write_file(path, foreign_file(h.dump(), data));
    expect_read_error(path, {path, "checksum mismatch: header or data is corrupt"});
  };
  edit_and_read([](auto& h) { h["__metadata__"]["convnet.step"] = "11"; });
  edit_and_read([](auto& h) { h["__metadata__"]["added"] = "x"; });
  edit_and_read([](auto& h) { h["__metadata__"].erase("convnet.step"); });
  edit_and_read([](auto& h) { h["v"]["shape"] = {4}; });  // same bytes, other shape
  edit_and_read([](auto& h) {                             // the two tensors swap names
    std::swap(h["w"], h["v"]);
    std::swap(h["w"]["shape"], h["v"]["shape"]);
  });
}

TEST(Safetensors, ChecksumDoesNotDependOnHeaderFormatting) {
  TempDir dir;
  Rng rng(17);
  const std::string path = dir.file("f.safetensors");
  write_safetensors(path, {{"w", testing::random_tensor({4}, rng)}, {"v", testing::random_tensor({3}, rng)}},
                    {{"b", "2"}, {"a", "1"}});
  const auto [header, data] = split_file(read_file(path));
  nlohmann::ordered_json reordered;  // entries before the metadata, in reverse order
  reordered["v"] = header["v"];
  reordered["w"] = header["w"];
  reordered["__metadata__"] = header["__metadata__"];
  write_file(path, foreign_file(reordered.dump(4), data));
  EXPECT_EQ(read_safetensors(path).checksum, ChecksumCoverage::header_and_data);
}

TEST(Safetensors, PreviousFormatDataChecksumIsVerified) {
  TempDir dir;
  const std::string path = dir.file("old.safetensors");
  const std::string data = raw<float>({1, 2});
  const std::string header = fmt::format(
      R"({{"__metadata__":{{"convnet.checksum":"{:016x}"}},"w":{{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}}})",
      fnv1a64(data.data(), data.size()));
  write_file(path, foreign_file(header, data));
  EXPECT_EQ(read_safetensors(path).checksum, ChecksumCoverage::data);
  write_file(path, foreign_file(header, raw<float>({1, 3})));
  expect_read_error(path, {path, "checksum mismatch: data is corrupt"});
  write_file(path, foreign_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data));
  EXPECT_EQ(read_safetensors(path).checksum, ChecksumCoverage::none);
}

TEST(Safetensors, OnlyRegularFilesAreRead) {
  TempDir dir;
  expect_read_error(dir.path(), {dir.path(), "expected a regular file"});
  expect_read_error("/dev/zero", {"/dev/zero", "expected a regular file"});  // endless: must not be read
  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_read_error(fifo, {fifo, "expected a regular file"});  // no writer: must not block either
}

TEST(Safetensors, ParseErrorQuotesDamagedBytesPrintably) {
  TempDir dir;
  const std::string path = dir.file("bytes.safetensors");
  write_file(path, foreign_file("\xff\xfe", ""));
  const std::string message = testing::error_of([&] { read_safetensors(path); });
  EXPECT_NE(message.find("\\xff"), std::string::npos) << message;
  for (const char c : message)
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << static_cast<int>(c) << " in " << message;
}

TEST(Safetensors, MissingFileNamesThePathAndReason) {
  TempDir dir;
  const std::string path = dir.file("nope.safetensors");
  expect_read_error(path, {path, "No such file or directory"});
}

TEST(Safetensors, CorruptedJsonIsAnError) {
  TempDir dir;
  Rng rng(7);
  const std::string path = dir.file("json.safetensors");
  write_safetensors(path, {{"w", testing::random_tensor({4}, rng)}}, {});
  std::string bytes = read_file(path);
  bytes[bytes.find(':', 8)] = '#';  // the first key-value separator
  write_file(path, bytes);
  expect_read_error(path, {path, "not valid JSON", "parse error"});
}

TEST(Safetensors, HeaderMustBeAnObject) {
  TempDir dir;
  const std::string path = dir.file("arr.safetensors");
  write_file(path, foreign_file("[1, 2]", ""));
  expect_read_error(path, {path, "expected an object"});
}

TEST(Safetensors, AbsurdHeaderLengthIsAnError) {
  TempDir dir;
  const std::string path = dir.file("absurd.safetensors");
  write_file(path, le64(uint64_t{1} << 40) + std::string(64, ' '));
  expect_read_error(path, {path, "absurd"});
  write_file(path, le64(~uint64_t{0}) + "{}");
  expect_read_error(path, {path, "absurd"});
}

TEST(Safetensors, MalformedEntriesAreRejectedNamingTheTensor) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const std::string data = raw<float>({1, 2, 3});
  const struct {
    const char* entry;
    const char* expected;
  } cases[] = {
      {R"({"shape":[3],"data_offsets":[0,12]})", "missing 'dtype'"},
      {R"({"dtype":"F32","data_offsets":[0,12]})", "missing 'shape'"},
      {R"({"dtype":"F32","shape":[3]})", "missing 'data_offsets'"},
      {R"([1, 2])", "expected an object"},
      {R"({"dtype":32,"shape":[3],"data_offsets":[0,12]})", "expected a string"},
      {R"({"dtype":"F64","shape":[3],"data_offsets":[0,12]})", "unsupported dtype 'F64'"},
      {R"({"dtype":"F32","shape":"3","data_offsets":[0,12]})", "expected an array"},
      {R"({"dtype":"F32","shape":[-3],"data_offsets":[0,12]})", "is negative"},
      {R"({"dtype":"F32","shape":[3.0],"data_offsets":[0,12]})", "not an integer"},
      {R"({"dtype":"F32","shape":[null],"data_offsets":[0,12]})", "expected a non-negative integer"},
      {R"({"dtype":"F32","shape":[3],"data_offsets":[0]})", "expected [begin, end]"},
      {R"({"dtype":"F32","shape":[3],"data_offsets":[0,12,16]})", "expected [begin, end]"},
      {R"({"dtype":"F32","shape":[3],"data_offsets":{"a":0}})", "expected [begin, end]"},
      {R"({"dtype":"F32","shape":[3],"data_offsets":[12,0]})", "begin > end"},
      {R"({"dtype":"F32","shape":[3],"data_offsets":[-1,12]})", "is negative"},
      {R"({"dtype":"F32","shape":[3],"data_offsets":[0,16]})", "past the 12-byte data section"},
      {R"({"dtype":"F32","shape":[2],"data_offsets":[0,12]})", "hold 12 bytes"},
      {R"({"dtype":"F16","shape":[3],"data_offsets":[0,12]})", "hold 12 bytes"},
      {R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,12]})", "too large"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.entry);
    write_file(path, foreign_file(std::string(R"({"layer.w":)") + c.entry + "}", data));
    expect_read_error(path, {path, "'layer.w'", c.expected});
  }
}

TEST(Safetensors, OverlapsHolesAndTrailingBytesAreRejected) {
  TempDir dir;
  const std::string path = dir.file("ovl.safetensors");
  const std::string data = raw<float>({1, 2, 3});
  write_file(path, foreign_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                data));
  expect_read_error(path, {path, "'b'", "overlap", "'a'"});
  write_file(path, foreign_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                data));
  expect_read_error(path, {path, "'b'", "hole"});
  write_file(path, foreign_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                data));
  expect_read_error(path, {path, "'a'", "hole"});
  write_file(path, foreign_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data));
  expect_read_error(path, {path, "trailing"});
}

TEST(Safetensors, DuplicateNamesAreRejected) {
  TempDir dir;
  const std::string path = dir.file("dup.safetensors");
  write_file(path, foreign_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                raw<float>({1, 2})));
  expect_read_error(path, {path, "duplicate key 'a'"});
  Rng rng(8);
  const Tensor t = testing::random_tensor({2}, rng);
  expect_error(
      [&] {
        write_safetensors(dir.file("w.safetensors"), {{"x", t}, {"x", t}}, {});
      },
      {"'x'", "duplicate name"});
}

TEST(Safetensors, MetadataMustMapStringsToStrings) {
  TempDir dir;
  const std::string path = dir.file("meta.safetensors");
  write_file(path, foreign_file(R"({"__metadata__":{"epoch":3}})", ""));
  expect_read_error(path, {path, "'epoch'", "expected a string"});
  write_file(path, foreign_file(R"({"__metadata__":["x"]})", ""));
  expect_read_error(path, {path, "__metadata__", "expected an object"});
}

TEST(Safetensors, WriterRejectsInvalidInput) {
  TempDir dir;
  Rng rng(9);
  const std::string path = dir.file("w.safetensors");
  expect_error(
      [&] {
        write_safetensors(path, {{"f", testing::random_tensor({2}, rng), true}}, {});
      },
      {"'f'", "as_i64 needs an I32 tensor"});
  expect_error(
      [&] {
        write_safetensors(path, {{"__metadata__", testing::random_tensor({2}, rng)}}, {});
      },
      {"reserved"});
  expect_error([&] { write_safetensors(path, {{"u", Tensor()}}, {}); }, {"'u'", "undefined"});
  EXPECT_FALSE(std::ifstream(path).good()) << "a rejected write must not create the file";
}

}  // namespace
}  // namespace convnet
