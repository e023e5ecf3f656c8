// SourceMap: a position index of a JSON-with-comments text (see source_map.hpp).
//
// The scanner is a flat loop over tokens with an explicit stack of open containers. Each frame
// knows its JSON pointer, whether it is an object or an array, the next array index, the member
// key waiting for its value, and the keys seen so far (for duplicate detection). A value's
// position is recorded when its first token is seen.
#include "sluice/config/source_map.hpp"

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <vector>

namespace sluice::config {
namespace {

struct Frame {
  bool is_object = false;
  std::string pointer;
  std::size_t next_index = 0;
  bool expect_key = true;          // objects: the next string is a key
  std::optional<std::string> key;  // objects: key read, value not yet started
  SourceLocation key_location;     // where `key` was written
  std::unordered_set<std::string> keys;
};

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Scanner {
 public:
  Scanner(std::string_view text, std::size_t max_depth) : text_(text), max_depth_(max_depth) {}

  void run(std::unordered_map<std::string, SourceLocation>& positions,
           std::unordered_set<std::string>& arrays, std::optional<SourceProblem>& problem) {
    positions_ = &positions;
    problem_ = &problem;
    bool root_seen = false;
    while (!problem.has_value()) {
      skip_space_and_comments();
      if (pos_ >= text_.size()) break;
      const SourceLocation here = location();
      const char c = text_[pos_];
      switch (c) {
        case '{':
        case '[': {
          if (!begin_value(here, root_seen)) return;
          if (stack_.size() >= max_depth_) {
            fail(SourceProblem::Kind::too_deep, current_pointer_, here,
                 "nested deeper than " + std::to_string(max_depth_) + " levels");
            return;
          }
          Frame frame;
          frame.is_object = c == '{';
          frame.pointer = current_pointer_;
          if (!frame.is_object) arrays.insert(current_pointer_);
          stack_.push_back(std::move(frame));
          advance();
          break;
        }
        case '}':
        case ']':
          if (stack_.empty() || stack_.back().is_object != (c == '}')) {
            fail(SourceProblem::Kind::malformed, current_pointer_, here,
                 std::string("unexpected '") + c + "'");
            return;
          }
          stack_.pop_back();
          advance();
          break;
        case ':':
          advance();
          break;
        case ',':
          if (!stack_.empty() && stack_.back().is_object) stack_.back().expect_key = true;
          advance();
          break;
        case '"': {
          if (!stack_.empty() && stack_.back().is_object && stack_.back().expect_key) {
            std::optional<std::string> key = read_string();
            if (!key) return;
            Frame& frame = stack_.back();
            frame.expect_key = false;
            if (!frame.keys.insert(*key).second) {
              fail(SourceProblem::Kind::duplicate_key, pointer_append(frame.pointer, *key), here,
                   "duplicate key \"" + *key + "\"");
              return;
            }
            frame.key = std::move(*key);
            frame.key_location = here;
            break;
          }
          if (!begin_value(here, root_seen)) return;
          if (!read_string()) return;
          break;
        }
        default:
          if (!begin_value(here, root_seen)) return;
          skip_literal();
          break;
      }
    }
  }

 private:
  // Records the position of the value starting here and computes its pointer into
  // current_pointer_. Returns false (after recording a problem) when no value may start here.
  bool begin_value(SourceLocation here, bool& root_seen) {
    if (stack_.empty()) {
      if (root_seen) {
        fail(SourceProblem::Kind::malformed, "", here, "text after the end of the document");
        return false;
      }
      root_seen = true;
      current_pointer_.clear();
      (*positions_)[current_pointer_] = here;
      return true;
    }
    Frame& frame = stack_.back();
    if (frame.is_object) {
      if (!frame.key) {
        fail(SourceProblem::Kind::malformed, frame.pointer, here, "expected a key");
        return false;
      }
      current_pointer_ = pointer_append(frame.pointer, *frame.key);
      (*positions_)[current_pointer_] = frame.key_location;
      frame.key.reset();
      return true;
    }
    current_pointer_ = pointer_append(frame.pointer, std::to_string(frame.next_index++));
    (*positions_)[current_pointer_] = here;
    return true;
  }

  // Reads the string starting at pos_ (on its opening quote) and returns its decoded value.
  std::optional<std::string> read_string() {
    const SourceLocation start = location();
    advance();  // opening quote
    std::string out;
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == '"') {
        advance();
        return out;
      }
      if (c == '\n') break;  // JSON strings cannot span lines
      if (c != '\\') {
        out += c;
        advance();
        continue;
      }
      advance();
      if (pos_ >= text_.size()) break;
      char e = text_[pos_];
      advance();
      switch (e) {
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          std::optional<std::uint32_t> cp = read_hex4();
          if (!cp) break;
          if (*cp >= 0xd800 && *cp <= 0xdbff && pos_ + 1 < text_.size() && text_[pos_] == '\\' &&
              text_[pos_ + 1] == 'u') {
            advance();
            advance();
            std::optional<std::uint32_t> low = read_hex4();
            if (low && *low >= 0xdc00 && *low <= 0xdfff) {
              *cp = 0x10000 + ((*cp - 0xd800) << 10) + (*low - 0xdc00);
            }
          }
          append_utf8(out, *cp);
          break;
        }
        default:
          out += e;
          break;  // \" \\ \/ and anything a parser would reject anyway
      }
    }
    fail(SourceProblem::Kind::malformed, current_pointer_, start, "unterminated string");
    return std::nullopt;
  }

  std::optional<std::uint32_t> read_hex4() {
    if (pos_ + 4 > text_.size()) return std::nullopt;
    std::uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      int h = hex_value(text_[pos_]);
      if (h < 0) return std::nullopt;
      value = value * 16 + static_cast<std::uint32_t>(h);
      advance();
    }
    return value;
  }

  void skip_literal() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == ',' || c == ']' || c == '}' || c == ':' || c == '"' || c == ' ' || c == '\t' ||
          c == '\n' || c == '\r' || c == '/') {
        break;
      }
      advance();
    }
    if (pos_ < text_.size() && text_[pos_] == '/' && !at_comment()) advance();
  }

  bool at_comment() const {
    return pos_ + 1 < text_.size() && text_[pos_] == '/' &&
           (text_[pos_ + 1] == '/' || text_[pos_ + 1] == '*');
  }

  void skip_space_and_comments() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        advance();
      } else if (at_comment() && text_[pos_ + 1] == '/') {
        while (pos_ < text_.size() && text_[pos_] != '\n')
          advance();
      } else if (at_comment()) {
        advance();
        advance();
        while (pos_ < text_.size() &&
               !(text_[pos_] == '*' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '/')) {
          advance();
        }
        if (pos_ < text_.size()) {
          advance();
          advance();
        }
      } else {
        return;
      }
    }
  }

  void advance() {
    if (text_[pos_] == '\n') {
      ++line_;
      column_ = 1;
    } else {
      ++column_;
    }
    ++pos_;
  }

  SourceLocation location() const { return {line_, column_}; }

  void fail(SourceProblem::Kind kind, std::string pointer, SourceLocation where,
            std::string message) {
    if (!problem_->has_value()) {
      *problem_ = SourceProblem{kind, std::move(pointer), where, std::move(message)};
    }
  }

  std::string_view text_;
  std::size_t max_depth_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  std::size_t column_ = 1;
  std::vector<Frame> stack_;
  std::string current_pointer_;
  std::unordered_map<std::string, SourceLocation>* positions_ = nullptr;
  std::optional<SourceProblem>* problem_ = nullptr;
};

}  // namespace

std::string pointer_append(std::string_view pointer, std::string_view token) {
  std::string out;
  out.reserve(pointer.size() + token.size() + 1);
  out.append(pointer);
  out += '/';
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string display_member(std::string_view display, std::string_view key) {
  const bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '$';
  });
  if (plain)
    return display.empty() ? std::string(key) : std::string(display) + "." + std::string(key);
  return std::string(display) + "[" +
         nlohmann::json(std::string(key))
             .dump(-1, ' ', true, nlohmann::json::error_handler_t::replace) +
         "]";
}

std::string display_element(std::string_view display, std::size_t index) {
  return std::string(display) + "[" + std::to_string(index) + "]";
}

std::string display_pointer(std::string_view pointer,
                            const std::function<bool(std::string_view)>& is_array) {
  std::string display;
  std::size_t start = 0;  // of the current token's '/'
  while (start < pointer.size()) {
    const std::size_t end = std::min(pointer.find('/', start + 1), pointer.size());
    std::string token;  // RFC 6901 unescaping: ~1 is '/', ~0 is '~'
    for (std::size_t i = start + 1; i < end; ++i) {
      if (pointer[i] == '~' && i + 1 < end) {
        token += pointer[i + 1] == '1' ? '/' : '~';
        ++i;
      } else {
        token += pointer[i];
      }
    }
    const bool digits =
        !token.empty() && token.find_first_not_of("0123456789") == std::string::npos;
    if (digits && is_array(pointer.substr(0, start))) {
      display += "[" + token + "]";  // the token as written: an index has no sign or exponent
    } else {
      display = display_member(display, token);
    }
    start = end;
  }
  return display;
}

SourceLocation location_of(std::string_view text, std::size_t offset) {
  if (offset > text.size()) offset = text.size();
  SourceLocation loc{1, 1};
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++loc.line;
      loc.column = 1;
    } else {
      ++loc.column;
    }
  }
  return loc;
}

SourceMap SourceMap::build(std::string_view text, std::size_t max_depth) {
  SourceMap map;
  Scanner(text, max_depth).run(map.positions_, map.arrays_, map.problem_);
  return map;
}

std::optional<SourceLocation> SourceMap::find(std::string_view pointer) const {
  auto it = positions_.find(std::string(pointer));
  if (it == positions_.end()) return std::nullopt;
  return it->second;
}

bool SourceMap::is_array(std::string_view pointer) const {
  return arrays_.count(std::string(pointer)) > 0;
}

SourceLocation SourceMap::locate(std::string_view pointer) const {
  while (true) {
    if (auto loc = find(pointer)) return *loc;
    if (pointer.empty()) return {};
    pointer = pointer.substr(0, pointer.rfind('/'));
  }
}

}  // namespace sluice::config
