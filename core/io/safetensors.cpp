#include "core/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "core/base/error.h"
#include "core/base/regular_file.h"
#include "core/io/atomic_file.h"

// Tensor bytes go to and from the file unchanged, and safetensors is little-endian.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace convnet {

namespace {

using Json = nlohmann::ordered_json;  // keeps the writer's key order and the file's entry order

constexpr const char* kChecksumKey = "convnet.file_checksum";  // canonical header + data
constexpr const char* kDataChecksumKey = "convnet.checksum";   // data only (before format 2)
constexpr const char* kMetadataKey = "__metadata__";
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // anything larger is a corrupt length field

std::string checksum_hex(uint64_t hash) {
  return fmt::format("{:016x}", hash);
}

// The dtypes a file may hold: ours plus I64, which is narrowed to I32 on read.
struct FileDType {
  DType dtype;
  size_t size;  // bytes per element in the file
  bool is_i64;
};

bool parse_dtype(const std::string& name, FileDType& out) {
  static constexpr DType kOurs[] = {DType::f32, DType::bf16, DType::f16, DType::i32, DType::u8};
  for (DType d : kOurs) {
    if (name == dtype_name(d)) {
      out = {d, dtype_size(d), false};
      return true;
    }
  }
  if (name == "I64") {
    out = {DType::i32, 8, true};
    return true;
  }
  return false;
}

// One header entry as JSON (J: ordered_json for the file, json for the canonical form).
template <class J>
J entry_json(const HeaderEntry& e) {
  return {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
}

// `text` with every byte outside printable ASCII as \xNN: a parse error quotes the damaged bytes.
std::string printable(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f)
      out += c;
    else
      out += fmt::format("\\x{:02x}", byte);
  }
  return out;
}

bool is_checksum_key(const std::string& key) {
  return key == kChecksumKey || key == kDataChecksumKey;
}

// Checkpoints of the models convnet builds are megabytes; the bound only stops a hostile size
// from becoming an allocation failure.
constexpr uint64_t kMaxCheckpointBytes = uint64_t{16} << 30;

// One validated header entry.
struct Entry {
  HeaderEntry header;
  FileDType dtype;
};

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {}

  SafetensorsFile read() {
    const std::string bytes = read_regular_file_text(path_, kMaxCheckpointBytes, "checkpoint");
    if (bytes.size() < 8) fail("file is {} bytes, shorter than the 8-byte header length", bytes.size());
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
    if (header_size > kMaxHeaderBytes)
      fail("header length {} is absurd (over {} bytes): corrupt file", header_size, kMaxHeaderBytes);
    if (header_size > bytes.size() - 8) {
      fail("header length {} exceeds the {} bytes after the length field: truncated file", header_size,
           bytes.size() - 8);
    }
    const std::string_view header_text(bytes.data() + 8, static_cast<size_t>(header_size));
    const std::string_view data(bytes.data() + 8 + header_size, bytes.size() - 8 - header_size);

    const Json header = parse_json(header_text);
    SafetensorsFile file;
    std::vector<Entry> entries;
    for (const auto& [key, value] : header.items()) {
      if (key == kMetadataKey) {
        read_metadata(value, file.metadata);
      } else {
        entries.push_back(read_entry(key, value, data.size()));
      }
    }
    check_coverage(entries, data.size());
    file.checksum = verify_checksums(file.metadata, entries, data);

    file.tensors.reserve(entries.size());
    for (const Entry& e : entries) file.tensors.push_back(make_tensor(e, data));
    return file;
  }

 private:
  template <class... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) const {
    throw Error(fmt::format("checkpoint '{}': {}", path_, fmt::format(f, std::forward<Args>(args)...)));
  }
  template <class... Args>
  [[noreturn]] void fail_tensor(const std::string& name, fmt::format_string<Args...> f, Args&&... args) const {
    throw Error(
        fmt::format("checkpoint '{}': tensor '{}': {}", path_, name, fmt::format(f, std::forward<Args>(args)...)));
  }

  // Verifies the checksum keys present; returns what they covered.
  ChecksumCoverage verify_checksums(const std::map<std::string, std::string>& metadata,
                                    const std::vector<Entry>& entries, std::string_view data) const {
    ChecksumCoverage coverage = ChecksumCoverage::none;
    if (auto it = metadata.find(kDataChecksumKey); it != metadata.end()) {
      const std::string actual = checksum_hex(fnv1a64(data.data(), data.size()));
      if (it->second != actual)
        fail("checksum mismatch: data is corrupt ({} says {}, data hashes to {})", kDataChecksumKey, it->second,
             actual);
      coverage = ChecksumCoverage::data;
    }
    if (auto it = metadata.find(kChecksumKey); it != metadata.end()) {
      std::vector<HeaderEntry> header;
      for (const Entry& e : entries) header.push_back(e.header);
      const std::string canonical = canonical_header(metadata, header);
      const uint64_t hash = fnv1a64(data.data(), data.size(), fnv1a64(canonical.data(), canonical.size()));
      if (it->second != checksum_hex(hash))
        fail("checksum mismatch: header or data is corrupt ({} says {}, the file hashes to {})", kChecksumKey,
             it->second, checksum_hex(hash));
      coverage = ChecksumCoverage::header_and_data;
    }
    return coverage;
  }

  Json parse_json(std::string_view text) const {
    // nlohmann keeps the last of duplicate keys silently; the callback records them instead.
    std::vector<std::set<std::string>> open_objects;
    std::string duplicate;
    Json::parser_callback_t callback = [&](int, Json::parse_event_t event, Json& parsed) {
      if (event == Json::parse_event_t::object_start) {
        open_objects.emplace_back();
      } else if (event == Json::parse_event_t::object_end) {
        if (!open_objects.empty()) open_objects.pop_back();
      } else if (event == Json::parse_event_t::key && !open_objects.empty() && parsed.is_string()) {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
      }
      return true;
    };
    Json header;
    try {
      header = Json::parse(text.begin(), text.end(), callback);
    } catch (const Json::exception& e) {
      fail("header is not valid JSON: {}", printable(e.what()));
    }
    if (!header.is_object()) fail("header is a JSON {}, expected an object", header.type_name());
    if (!duplicate.empty()) fail("duplicate key '{}' in the header", duplicate);
    return header;
  }

  void read_metadata(const Json& value, std::map<std::string, std::string>& metadata) const {
    if (!value.is_object()) fail("{} is a JSON {}, expected an object of strings", kMetadataKey, value.type_name());
    for (const auto& [key, item] : value.items()) {
      if (!item.is_string()) fail("{} key '{}' is a JSON {}, expected a string", kMetadataKey, key, item.type_name());
      metadata[key] = item.get<std::string>();
    }
  }

  // A non-negative JSON integer that fits in int64 (so it is valid both as an offset and a dim).
  uint64_t read_count(const std::string& name, const char* field, const Json& v) const {
    if (v.is_number_unsigned()) {
      const uint64_t n = v.get<uint64_t>();
      if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail_tensor(name, "{} {} is too large", field, n);
      return n;
    }
    if (v.is_number_integer()) fail_tensor(name, "{} {} is negative", field, v.get<int64_t>());
    if (v.is_number_float()) fail_tensor(name, "{} {} is not an integer", field, v.dump());
    fail_tensor(name, "{} is a JSON {}, expected a non-negative integer", field, v.type_name());
  }

  Entry read_entry(const std::string& name, const Json& value, size_t data_size) const {
    if (!value.is_object()) fail_tensor(name, "entry is a JSON {}, expected an object", value.type_name());
    Entry e;
    HeaderEntry& h = e.header;
    h.name = name;
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      if (!value.contains(field)) fail_tensor(name, "missing '{}'", field);
    }
    const Json& dtype = value["dtype"];
    if (!dtype.is_string()) fail_tensor(name, "dtype is a JSON {}, expected a string", dtype.type_name());
    if (!parse_dtype(dtype.get<std::string>(), e.dtype)) {
      fail_tensor(name, "unsupported dtype '{}' (expected F32, BF16, F16, I32, U8 or I64)", dtype.get<std::string>());
    }
    h.dtype = dtype.get<std::string>();
    const Json& shape = value["shape"];
    if (!shape.is_array()) fail_tensor(name, "shape is a JSON {}, expected an array", shape.type_name());
    uint64_t numel = 1;
    for (const Json& d : shape) {
      const uint64_t dim = read_count(name, "shape dimension", d);
      h.shape.push_back(static_cast<int64_t>(dim));
      if (__builtin_mul_overflow(numel, dim, &numel)) fail_tensor(name, "shape {} is too large", shape.dump());
    }
    const Json& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2) {
      fail_tensor(name, "data_offsets is {}, expected [begin, end]", offsets.dump());
    }
    h.begin = read_count(name, "data_offsets begin", offsets[0]);
    h.end = read_count(name, "data_offsets end", offsets[1]);
    if (h.begin > h.end) fail_tensor(name, "data_offsets [{}, {}] has begin > end", h.begin, h.end);
    if (h.end > data_size) {
      fail_tensor(name, "data_offsets [{}, {}] extend past the {}-byte data section (truncated file?)", h.begin, h.end,
                  data_size);
    }
    uint64_t expected = 0;
    if (__builtin_mul_overflow(numel, e.dtype.size, &expected) || expected != h.end - h.begin) {
      fail_tensor(name, "data_offsets [{}, {}] hold {} bytes, but shape {} of {} needs {} x {} bytes", h.begin, h.end,
                  h.end - h.begin, shape.dump(), h.dtype, numel, e.dtype.size);
    }
    return e;
  }

  // Sorts entries into file order and checks they tile the data section exactly.
  void check_coverage(std::vector<Entry>& entries, size_t data_size) const {
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
      return a.header.begin != b.header.begin ? a.header.begin < b.header.begin : a.header.end < b.header.end;
    });
    uint64_t expected = 0;
    const HeaderEntry* previous = nullptr;
    for (const Entry& entry : entries) {
      const HeaderEntry& e = entry.header;
      if (e.begin < expected) {
        fail_tensor(e.name, "data_offsets [{}, {}] overlap tensor '{}' (which ends at {})", e.begin, e.end,
                    previous->name, expected);
      }
      if (e.begin > expected)
        fail_tensor(e.name, "data_offsets [{}, {}] leave a hole at bytes [{}, {})", e.begin, e.end, expected, e.begin);
      expected = e.end;
      previous = &e;
    }
    if (expected != data_size) {
      fail("tensors cover {} bytes but the data section has {}: unexplained trailing bytes", expected, data_size);
    }
  }

  NamedTensor make_tensor(const Entry& entry, std::string_view data) const {
    const HeaderEntry& e = entry.header;
    NamedTensor out{e.name, Tensor(e.shape, entry.dtype.dtype), entry.dtype.is_i64};
    const char* src = data.data() + e.begin;
    if (!entry.dtype.is_i64) {
      std::memcpy(out.tensor.raw(), src, out.tensor.bytes());
      return out;
    }
    int32_t* dst = out.tensor.data<int32_t>();
    for (int64_t i = 0; i < out.tensor.numel(); ++i) {
      int64_t v;
      std::memcpy(&v, src + 8 * i, 8);
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
        fail_tensor(e.name, "I64 value {} at index {} does not fit in I32", v, i);
      }
      dst[i] = static_cast<int32_t>(v);
    }
    return out;
  }

  const std::string& path_;
};

}  // namespace

std::string canonical_header(const std::map<std::string, std::string>& metadata,
                             const std::vector<HeaderEntry>& entries) {
  nlohmann::json header = nlohmann::json::object();  // std::map underneath: keys sorted
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [key, value] : metadata)
    if (!is_checksum_key(key)) meta[key] = value;
  header[kMetadataKey] = std::move(meta);
  for (const HeaderEntry& e : entries) header[e.name] = entry_json<nlohmann::json>(e);
  return header.dump();
}

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const NamedTensor& t : tensors) {
    if (t.name == name) return &t.tensor;
  }
  return nullptr;
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  auto fail = [&](const std::string& name, const std::string& what) {
    throw Error(fmt::format("writing checkpoint '{}': tensor '{}': {}", path, name, what));
  };
  std::set<std::string> names;
  std::vector<std::string> widened;  // I64 copies of as_i64 tensors, alive until written
  widened.reserve(tensors.size());
  std::vector<std::string_view> data;
  data.reserve(tensors.size());
  for (const NamedTensor& t : tensors) {
    if (t.name.empty() || t.name == kMetadataKey) fail(t.name, "reserved or empty name");
    if (!names.insert(t.name).second) fail(t.name, "duplicate name");
    if (!t.tensor.defined()) fail(t.name, "undefined tensor");
    if (!t.tensor.is_cpu()) fail(t.name, fmt::format("is on {}, expected a host tensor", t.tensor.device().str()));
    if (t.as_i64) {
      if (t.tensor.dtype() != DType::i32)
        fail(t.name, fmt::format("as_i64 needs an I32 tensor, got {}", dtype_name(t.tensor.dtype())));
      std::string& bytes = widened.emplace_back(static_cast<size_t>(t.tensor.numel()) * 8, '\0');
      const int32_t* src = t.tensor.data<int32_t>();
      for (int64_t i = 0; i < t.tensor.numel(); ++i) {
        const int64_t v = src[i];
        std::memcpy(bytes.data() + 8 * i, &v, 8);
      }
      data.emplace_back(bytes);
    } else {
      data.emplace_back(static_cast<const char*>(t.tensor.raw()), t.tensor.bytes());
    }
  }

  std::vector<HeaderEntry> entries;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const NamedTensor& t = tensors[i];
    const uint64_t end = offset + data[i].size();
    entries.push_back({t.name, t.as_i64 ? "I64" : dtype_name(t.tensor.dtype()), t.tensor.shape(), offset, end});
    offset = end;
  }
  std::map<std::string, std::string> meta_without_checksums = metadata;
  meta_without_checksums.erase(kChecksumKey);  // a caller's value would be stale
  meta_without_checksums.erase(kDataChecksumKey);
  const std::string canonical = canonical_header(meta_without_checksums, entries);
  uint64_t hash = fnv1a64(canonical.data(), canonical.size());
  for (std::string_view piece : data) hash = fnv1a64(piece.data(), piece.size(), hash);

  Json header = Json::object();
  Json meta = Json::object();
  for (const auto& [key, value] : meta_without_checksums) meta[key] = value;
  meta[kChecksumKey] = checksum_hex(hash);
  header[kMetadataKey] = std::move(meta);
  for (const HeaderEntry& e : entries) header[e.name] = entry_json<Json>(e);
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // data starts 8-byte aligned

  std::string length(8, '\0');
  const uint64_t n = header_text.size();
  for (size_t i = 0; i < 8; ++i) length[i] = static_cast<char>((n >> (8 * i)) & 0xff);

  std::vector<std::string_view> pieces{length, header_text};
  pieces.insert(pieces.end(), data.begin(), data.end());
  write_file_atomic(path, pieces);
}

SafetensorsFile read_safetensors(const std::string& path) {
  return Reader(path).read();
}

}  // namespace convnet
