#include "refit/io/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <set>

namespace refit::io {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const fs::path kCheckpoints =
    fs::path(REFIT_DATA_ROOT) / "data" / "checkpoints";

std::string Shared(const std::string& rel) {
  return (kCheckpoints / rel).string();
}

std::string Le64(uint64_t v) {
  std::string out(8, '\0');
  for (char& c : out) {
    c = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

// A safetensors file: length prefix, `header` verbatim, `data_bytes` bytes.
std::string Craft(const std::string& header, size_t data_bytes) {
  return Le64(header.size()) + header + std::string(data_bytes, '\x5a');
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

float HalfToFloat(uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  const float v = exp == 0
                      ? std::ldexp(static_cast<float>(mant), -24)
                      : std::ldexp(static_cast<float>(mant + 1024), exp - 25);
  return (h & 0x8000) ? -v : v;
}

// The elements of tensor `name`, which must have dtype `dtype`.
template <typename T>
std::vector<T> Values(const SafetensorsFile& file, const std::string& name,
                      DType dtype) {
  const TensorInfo* t = file.Find(name);
  if (t == nullptr) {
    ADD_FAILURE() << "no tensor " << name;
    return {};
  }
  EXPECT_EQ(t->dtype, dtype) << name;
  EXPECT_EQ(DTypeSize(dtype), sizeof(T)) << name;
  std::vector<T> out(t->nbytes / sizeof(T));
  std::memcpy(out.data(), file.Data(*t), t->nbytes);
  return out;
}

TensorToWrite WithData(std::string name, DType dtype,
                       std::vector<int64_t> shape, const void* data) {
  TensorToWrite t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = data;
  return t;
}

TensorToWrite WithFill(std::string name, DType dtype,
                       std::vector<int64_t> shape,
                       std::function<void(std::span<std::byte>)> fill) {
  TensorToWrite t = WithData(std::move(name), dtype, std::move(shape), nullptr);
  t.fill = std::move(fill);
  return t;
}

// ---------------------------------------------------- shared real checkpoints

class SharedCheckpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory(kCheckpoints)) {
      GTEST_SKIP() << kCheckpoints << " not present";
    }
  }
};

TEST_F(SharedCheckpointsTest, EveryFileIsValidAndFullyCovered) {
  int files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(kCheckpoints)) {
    if (entry.path().extension() != ".safetensors") continue;
    SCOPED_TRACE(entry.path().string());
    auto file = SafetensorsFile::Open(entry.path().string());
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    const auto& tensors = (*file)->tensors();
    EXPECT_FALSE(tensors.empty());
    EXPECT_TRUE(std::is_sorted(
        tensors.begin(), tensors.end(),
        [](const auto& a, const auto& b) { return a.name < b.name; }));
    uint64_t data_bytes = 0;
    for (const TensorInfo& t : tensors) {
      data_bytes += t.nbytes;
      EXPECT_EQ((*file)->Find(t.name), &t);
    }
    EXPECT_EQ(data_bytes + 8 + (*file)->header_bytes(), entry.file_size());
    ++files;
  }
  EXPECT_GE(files, 18);
}

TEST_F(SharedCheckpointsTest, OverallSampleHoldsRangeInNineDTypes) {
  auto file = SafetensorsFile::Open(
      Shared("hf-safetensors-samples/overall.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const SafetensorsFile& f = **file;
  EXPECT_EQ(f.header_bytes(), 526u);
  std::vector<std::string> names;
  for (const TensorInfo& t : f.tensors()) {
    names.push_back(t.name);
    EXPECT_THAT(t.shape, ElementsAre(6)) << t.name;
  }
  EXPECT_THAT(names, ElementsAre("B", "H", "I", "b", "d", "e", "f", "h", "i"));
  EXPECT_THAT(Values<uint8_t>(f, "B", DType::kU8),
              ElementsAre(253, 254, 255, 0, 1, 2));
  EXPECT_THAT(Values<uint16_t>(f, "H", DType::kU16),
              ElementsAre(65533, 65534, 65535, 0, 1, 2));
  EXPECT_THAT(Values<uint32_t>(f, "I", DType::kU32),
              ElementsAre(4294967293u, 4294967294u, 4294967295u, 0, 1, 2));
  EXPECT_THAT(Values<int8_t>(f, "b", DType::kI8),
              ElementsAre(-3, -2, -1, 0, 1, 2));
  EXPECT_THAT(Values<int16_t>(f, "h", DType::kI16),
              ElementsAre(-3, -2, -1, 0, 1, 2));
  EXPECT_THAT(Values<int32_t>(f, "i", DType::kI32),
              ElementsAre(-3, -2, -1, 0, 1, 2));
  EXPECT_THAT(Values<float>(f, "f", DType::kF32),
              ElementsAre(-3, -2, -1, 0, 1, 2));
  EXPECT_THAT(Values<double>(f, "d", DType::kF64),
              ElementsAre(-3, -2, -1, 0, 1, 2));
  std::vector<float> halves;
  for (uint16_t h : Values<uint16_t>(f, "e", DType::kF16)) {
    halves.push_back(HalfToFloat(h));
  }
  EXPECT_THAT(halves, ElementsAre(-3, -2, -1, 0, 1, 2));
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"test", "a"}}));
  // The data section starts at byte 8 + 526, so it is not 8-byte aligned.
  EXPECT_NE(reinterpret_cast<uintptr_t>(f.Data(*f.Find("d"))) % 8, 0u);
}

TEST_F(SharedCheckpointsTest, FluxmlNonShardedHasTwelveDTypes) {
  auto file = SafetensorsFile::Open(
      Shared("fluxml-dtypes/non_sharded/model.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->tensors().size(), 36u);
  std::set<DType> dtypes;
  for (const TensorInfo& t : (*file)->tensors()) dtypes.insert(t.dtype);
  EXPECT_EQ(dtypes.size(), 12u);
  for (DType d : {DType::kBF16, DType::kF8E4M3, DType::kF8E5M2, DType::kBool}) {
    EXPECT_TRUE(dtypes.count(d)) << DTypeName(d);
  }
  const TensorInfo* bf16 = (*file)->Find("bfloat16_357");
  ASSERT_NE(bf16, nullptr);
  EXPECT_THAT(bf16->shape, ElementsAre(3, 5, 7));
  EXPECT_EQ(bf16->nbytes, 3u * 5 * 7 * 2);
  EXPECT_TRUE((*file)->metadata().empty());
}

TEST_F(SharedCheckpointsTest, FluxmlMetadataIsRead) {
  auto file = SafetensorsFile::Open(
      Shared("fluxml-dtypes/non_sharded/model.with_metadata.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->metadata(),
            (std::map<std::string, std::string>{{"test", "metadata"},
                                                {"version", "2.2"}}));
}

TEST_F(SharedCheckpointsTest, FluxmlShardedIndexMatchesNonSharded) {
  auto sharded = Checkpoint::Open(Shared("fluxml-dtypes/sharded"));
  ASSERT_TRUE(sharded.ok()) << sharded.status().ToString();
  auto single =
      Checkpoint::Open(Shared("fluxml-dtypes/non_sharded/model.safetensors"));
  ASSERT_TRUE(single.ok()) << single.status().ToString();
  EXPECT_EQ(sharded->files().size(), 6u);
  ASSERT_EQ(sharded->Names().size(), 36u);
  ASSERT_EQ(sharded->Names(), single->Names());
  for (const std::string& name : sharded->Names()) {
    const TensorRef* a = sharded->Find(name);
    const TensorRef* b = single->Find(name);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(a->info->dtype, b->info->dtype) << name;
    EXPECT_EQ(a->info->shape, b->info->shape) << name;
    ASSERT_EQ(a->info->nbytes, b->info->nbytes) << name;
    EXPECT_EQ(std::memcmp(a->data, b->data, a->info->nbytes), 0) << name;
  }
}

TEST_F(SharedCheckpointsTest, DirectoryPrefersModelSafetensors) {
  auto ckpt = Checkpoint::Open(Shared("fluxml-dtypes/non_sharded"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  ASSERT_EQ(ckpt->files().size(), 1u);
  EXPECT_EQ(fs::path(ckpt->files()[0]->path()).filename(), "model.safetensors");
  EXPECT_EQ(ckpt->Names().size(), 36u);
}

// ------------------------------------------------------------ temp-dir tests

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "refit_io_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Path(const std::string& name) const {
    return (fs::path(dir_) / name).string();
  }
  // Writes U8 [2] tensors whose bytes are the name's first two characters.
  void WriteShard(const std::string& file, std::vector<std::string> names) {
    std::vector<TensorToWrite> tensors;
    for (const std::string& n : names) {
      tensors.push_back(WithData(n, DType::kU8, {2}, n.data()));
    }
    ASSERT_TRUE(WriteSafetensors(Path(file), tensors, {}).ok());
  }

  std::string dir_;
};

TEST(SafetensorsFileTest, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open("/nonexistent/x.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(file.status().message(), HasSubstr("/nonexistent/x.safetensors"));
}

// Fills a tensor with bytes seed, seed+1, ...
std::function<void(std::span<std::byte>)> Counting(uint8_t seed) {
  return [seed](std::span<std::byte> out) {
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<std::byte>(seed + i * 7);
    }
  };
}

std::vector<std::byte> Expected(const TensorToWrite& t, uint64_t nbytes) {
  std::vector<std::byte> bytes(nbytes);
  if (t.data != nullptr) {
    std::memcpy(bytes.data(), t.data, nbytes);
  } else if (t.fill) {
    t.fill(bytes);
  }
  return bytes;
}

TEST_F(TempDirTest, RoundTripPreservesBytesOrderAndMetadata) {
  const std::vector<float> f32 = {1.5f, -2, 3, 4, 5, 6};
  const std::vector<int64_t> i64 = {-42};
  const std::vector<uint8_t> flags = {1, 0, 1, 1, 0, 0, 1};
  const std::vector<TensorToWrite> tensors = {
      WithData("z.weight", DType::kF32, {2, 3}, f32.data()),
      WithData("a.flags", DType::kBool, {7}, flags.data()),
      WithFill("m.bf16", DType::kBF16, {4, 33}, Counting(7)),
      WithData("scalar", DType::kI64, {}, i64.data()),
      WithData("empty", DType::kU8, {0}, nullptr),
      WithFill("fp8", DType::kF8E4M3, {3, 5}, Counting(100)),
      WithFill("big", DType::kU8, {5, 4099}, Counting(3)),
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                       {"note", "round trip"}};
  const std::string path = Path("out.safetensors");
  Status st = WriteSafetensors(path, tensors, metadata);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->header_bytes() % 8, 0u);
  EXPECT_EQ((*file)->metadata(), metadata);
  EXPECT_EQ((*file)->tensors().size(), tensors.size());
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    const TensorInfo* info = (*file)->Find(t.name);
    ASSERT_NE(info, nullptr) << t.name;
    EXPECT_EQ(info->dtype, t.dtype) << t.name;
    EXPECT_EQ(info->shape, t.shape) << t.name;
    EXPECT_EQ(info->offset, offset) << t.name;  // laid out in the given order
    const std::byte* data = (*file)->Data(*info);
    EXPECT_EQ(std::vector<std::byte>(data, data + info->nbytes),
              Expected(t, info->nbytes))
        << t.name;
    offset += info->nbytes;
  }
  EXPECT_EQ(fs::file_size(path), 8 + (*file)->header_bytes() + offset);
}

TEST_F(TempDirTest, EmptyFileAndEmptyDataSectionAreValid) {
  const std::string path = Path("empty.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {}, {}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_TRUE((*file)->tensors().empty());
  EXPECT_EQ(fs::file_size(path), 8 + (*file)->header_bytes());

  const std::string zero = Path("zero.safetensors");
  WriteBytes(
      zero,
      Craft(R"({"e":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]}})", 0));
  auto zero_file = SafetensorsFile::Open(zero);
  ASSERT_TRUE(zero_file.ok()) << zero_file.status().ToString();
  EXPECT_EQ((*zero_file)->Find("e")->nbytes, 0u);
}

TEST_F(TempDirTest, WriterReplacesExistingFile) {
  const std::string path = Path("w.safetensors");
  WriteShard("w.safetensors", {"old"});
  WriteShard("w.safetensors", {"new"});
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->Find("old"), nullptr);
  EXPECT_NE((*file)->Find("new"), nullptr);
}

TEST_F(TempDirTest, WriterRejectsBadTensorsAndLeavesNoFile) {
  const uint8_t bytes[2] = {1, 2};
  const std::vector<std::vector<TensorToWrite>> cases = {
      {WithData("a", DType::kU8, {1}, bytes),
       WithData("a", DType::kU8, {1}, bytes)},
      {WithData("", DType::kU8, {1}, bytes)},
      {WithData("__metadata__", DType::kU8, {1}, bytes)},
      {WithData("nodata", DType::kU8, {2}, nullptr)},
      {WithData("neg", DType::kU8, {-1}, bytes)},
  };
  const std::string path = Path("bad.safetensors");
  for (const auto& tensors : cases) {
    SCOPED_TRACE(tensors.back().name);
    Status st = WriteSafetensors(path, tensors, {});
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
    EXPECT_THAT(st.message(), HasSubstr("bad.safetensors"));
    EXPECT_FALSE(fs::exists(path));
    EXPECT_FALSE(fs::exists(path + ".tmp"));
  }
}

TEST_F(TempDirTest, WriterReportsIoErrorForMissingDirectory) {
  const uint8_t byte = 0;
  const std::vector<TensorToWrite> tensors = {
      WithData("a", DType::kU8, {1}, &byte)};
  Status st = WriteSafetensors(Path("no/such/dir/x.safetensors"), tensors, {});
  EXPECT_EQ(st.code(), StatusCode::kIoError) << st.ToString();
  EXPECT_THAT(st.message(), HasSubstr("x.safetensors"));
}

// ------------------------------------------------------------- corrupt files

struct CorruptCase {
  std::string label;
  std::string bytes;
  std::string mentions;  // quoted name the message must contain, if any
};

void PrintTo(const CorruptCase& c, std::ostream* os) { *os << c.label; }

std::vector<CorruptCase> CorruptCases() {
  const std::string two_u8 =
      R"({"t.a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})";
  return {
      {"Truncated", "abcde", ""},
      {"HeaderPastEof", Le64(100) + "{}      ", ""},
      {"HeaderOverLimit", Le64(100'000'001) + std::string(64, ' '), ""},
      {"NotJson", Craft(R"({"w": nope})", 0), ""},
      {"NotAnObject", Craft("[1, 2]", 0), ""},
      {"BadUtf8", Craft("{\"\xff\":1}", 0), ""},
      {"UnknownDType",
       Craft(R"({"t.alpha":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})",
             1),
       "t.alpha"},
      {"NegativeDim",
       Craft(R"({"t.neg":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})",
             0),
       "t.neg"},
      {"MissingOffsets", Craft(R"({"t.x":{"dtype":"U8","shape":[1]}})", 1),
       "t.x"},
      {"ReversedOffsets",
       Craft(R"({"t.rev":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", 4),
       "t.rev"},
      {"SizeMismatch",
       Craft(R"({"t.w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
             20),
       "t.w"},
      {"Gap",
       Craft(R"({"t.a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
             R"("t.b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})",
             12),
       "t.b"},
      {"Overlap",
       Craft(R"({"t.a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
             R"("t.b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})",
             12),
       "t.b"},
      {"DataShorter", Craft(two_u8, 4), "t.a"},
      {"DataLonger", Craft(two_u8, 12), "t.a"},
      {"MetadataNotString", Craft(R"({"__metadata__":{"format":1}})", 0),
       "format"},
      {"MetadataNotObject", Craft(R"({"__metadata__":"pt"})", 0), ""},
      // Fuzzing (docs/RELIABILITY.md): the JSON parser kept the last of two
      // entries of one name, so the first one's dtype was dropped silently.
      {"DuplicateName",
       Craft(R"({"t.dup":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
             R"("t.dup":{"dtype":"I16","shape":[1],"data_offsets":[0,2]}})",
             2),
       "t.dup"},
      // Fuzzing: a number past double's range threw json::out_of_range,
      // which was not caught (std::terminate).
      {"NumberOutOfRange",
       Craft(R"({"t.a":{"dtype":"U8","shape":[1e999],"data_offsets":[0,1]}})",
             1),
       ""},
  };
}

class CorruptFileTest : public TempDirTest,
                        public ::testing::WithParamInterface<CorruptCase> {};

TEST_P(CorruptFileTest, IsDataLossNamingFileAndTensor) {
  const std::string name = "corrupt_" + GetParam().label + ".safetensors";
  WriteBytes(Path(name), GetParam().bytes);
  auto file = SafetensorsFile::Open(Path(name));
  ASSERT_FALSE(file.ok());
  const Status st = file.status();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
  EXPECT_THAT(st.message(), HasSubstr(name));
  if (!GetParam().mentions.empty()) {
    EXPECT_THAT(st.message(), HasSubstr("'" + GetParam().mentions + "'"));
  }
  EXPECT_EQ(st.message().find('\n'), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(All, CorruptFileTest,
                         ::testing::ValuesIn(CorruptCases()),
                         [](const auto& info) { return info.param.label; });

// ParseSafetensors validates bytes in memory as Open validates a file.
TEST(ParseSafetensorsTest, ParsesBytesAndRejectsShortInput) {
  const std::string bytes =
      Craft(R"({"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]},)"
            R"("a":{"dtype":"I16","shape":[1],"data_offsets":[0,2]}})",
            3);
  auto h = ParseSafetensors(
      "mem", std::as_bytes(std::span(bytes.data(), bytes.size())));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->header_bytes, bytes.size() - 8 - 3);
  ASSERT_EQ(h->tensors.size(), 2u);
  EXPECT_EQ(h->tensors[0].name, "a");
  EXPECT_EQ(h->tensors[1].offset, 2u);

  const std::string short_bytes = "short";
  auto bad = ParseSafetensors(
      "mem", std::as_bytes(std::span(short_bytes.data(), short_bytes.size())));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(bad.status().message(), HasSubstr("too short"));
}

// --------------------------------------------------------------- checkpoints

// Fuzzing (docs/RELIABILITY.md): shard names were joined to the checkpoint
// directory unchecked, so "../x" or "/x" opened files outside it.
TEST(ParseSafetensorsIndexTest, ShardOutsideCheckpointIsDataLoss) {
  // Shard names as JSON string contents.
  for (const std::string shard :
       {"../a.safetensors", "sub/../../a.safetensors", "/tmp/a.safetensors",
        "..", "", R"(a\u0000b)"}) {
    const std::string text = R"({"weight_map":{"t.w":")" + shard + R"("}})";
    auto map = ParseSafetensorsIndex("idx.json", text);
    ASSERT_FALSE(map.ok()) << text;
    EXPECT_EQ(map.status().code(), StatusCode::kDataLoss);
    EXPECT_THAT(map.status().message(), HasSubstr("'t.w'"));
  }
  auto ok = ParseSafetensorsIndex(
      "idx.json", R"({"weight_map":{"x":"a.safetensors","y":"sub/./b"}})");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->at("y"), "sub/./b");
}

TEST_F(TempDirTest, IndexNamingShardOutsideCheckpointIsDataLoss) {
  WriteShard("outside.safetensors", {"x"});
  fs::create_directory(Path("ckpt"));
  for (const std::string shard :
       {std::string("../outside.safetensors"), Path("outside.safetensors")}) {
    WriteBytes(Path("ckpt/model.safetensors.index.json"),
               R"({"weight_map":{"x":")" + shard + R"("}})");
    auto ckpt = Checkpoint::Open(Path("ckpt"));
    ASSERT_FALSE(ckpt.ok()) << shard;
    EXPECT_EQ(ckpt.status().code(), StatusCode::kDataLoss);
    EXPECT_THAT(ckpt.status().message(), HasSubstr("'x'"));
  }
}

TEST_F(TempDirTest, IndexNamingMissingShardIsNotFound) {
  WriteShard("a.safetensors", {"x"});
  WriteBytes(Path("model.safetensors.index.json"),
             R"({"weight_map":{"x":"a.safetensors","y":"gone.safetensors"}})");
  auto ckpt = Checkpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("gone.safetensors"));
}

TEST_F(TempDirTest, IndexNamingTensorAbsentFromShardIsDataLoss) {
  WriteShard("a.safetensors", {"x"});
  WriteShard("b.safetensors", {"y"});
  WriteBytes(Path("model.safetensors.index.json"),
             R"({"weight_map":{"x":"a.safetensors","y":"a.safetensors"}})");
  auto ckpt = Checkpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("'y'"));
  EXPECT_THAT(ckpt.status().message(), HasSubstr("a.safetensors"));
}

TEST_F(TempDirTest, IndexIncludesUnlistedTensorsOfItsShards) {
  WriteShard("a.safetensors", {"x", "extra"});
  WriteShard("b.safetensors", {"y"});
  WriteBytes(Path("model.safetensors.index.json"),
             R"({"metadata":{},"weight_map":{"x":"a.safetensors",)"
             R"("y":"b.safetensors"}})");
  auto ckpt = Checkpoint::Open(dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_THAT(ckpt->Names(), ElementsAre("extra", "x", "y"));
  EXPECT_EQ(ckpt->files().size(), 2u);
  const TensorRef* extra = ckpt->Find("extra");
  ASSERT_NE(extra, nullptr);
  EXPECT_EQ(fs::path(extra->file->path()).filename(), "a.safetensors");
  EXPECT_EQ(std::memcmp(extra->data, "ex", 2), 0);
  EXPECT_EQ(ckpt->Find("missing"), nullptr);
}

TEST_F(TempDirTest, TensorInTwoShardsIsDataLoss) {
  WriteShard("a.safetensors", {"x", "y"});
  WriteShard("b.safetensors", {"y"});
  WriteBytes(Path("model.safetensors.index.json"),
             R"({"weight_map":{"x":"a.safetensors","y":"b.safetensors"}})");
  auto indexed = Checkpoint::Open(dir_);
  ASSERT_FALSE(indexed.ok());
  EXPECT_EQ(indexed.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(indexed.status().message(), HasSubstr("'y'"));

  fs::remove(Path("model.safetensors.index.json"));
  auto listed = Checkpoint::Open(dir_);
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(listed.status().message(), HasSubstr("'y'"));
}

TEST_F(TempDirTest, BadIndexJsonIsDataLoss) {
  WriteShard("a.safetensors", {"x"});
  // Fuzzing: the number 1e999 threw json::out_of_range, which was not caught
  // (std::terminate).
  for (const char* text :
       {R"({"weight_map": {)", R"({"metadata": {"total_size": 1e999}})"}) {
    WriteBytes(Path("model.safetensors.index.json"), text);
    auto ckpt = Checkpoint::Open(dir_);
    ASSERT_FALSE(ckpt.ok()) << text;
    EXPECT_EQ(ckpt.status().code(), StatusCode::kDataLoss);
    EXPECT_THAT(ckpt.status().message(),
                HasSubstr("model.safetensors.index.json"));
  }
}

TEST_F(TempDirTest, DirectoryWithoutIndexOpensEveryShard) {
  WriteShard("model-00002-of-00002.safetensors", {"y"});
  WriteShard("model-00001-of-00002.safetensors", {"x"});
  WriteBytes(Path("notes.txt"), "not a shard");
  auto ckpt = Checkpoint::Open(dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_THAT(ckpt->Names(), ElementsAre("x", "y"));
  EXPECT_EQ(ckpt->files().size(), 2u);
  EXPECT_EQ(ckpt->path(), dir_);
}

TEST_F(TempDirTest, SingleFileCheckpoint) {
  WriteShard("one.safetensors", {"x", "y"});
  auto ckpt = Checkpoint::Open(Path("one.safetensors"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_THAT(ckpt->Names(), ElementsAre("x", "y"));
  EXPECT_EQ(ckpt->path(), Path("one.safetensors"));
}

TEST_F(TempDirTest, DirectoryWithoutSafetensorsIsNotFound) {
  WriteBytes(Path("config.json"), "{}");
  auto ckpt = Checkpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(dir_));

  auto missing = Checkpoint::Open(Path("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST_F(TempDirTest, CorruptShardFailsCheckpoint) {
  WriteBytes(Path("model.safetensors"), "short");
  auto ckpt = Checkpoint::Open(dir_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("model.safetensors"));
}

}  // namespace
}  // namespace refit::io
