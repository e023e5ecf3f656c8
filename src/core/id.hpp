// Strong ids for the scheduler's internal records: an Id<EntryTag> cannot be passed where an
// Id<SubQueueTag> is expected. An id is a 32-bit index into the record's slab; the default value
// is nil() ("no record"). Ids compare (for ordered maps and the invariant checker) but carry no
// arithmetic: only the slab that issued one turns it into a record.
#pragma once

#include <compare>
#include <cstdint>

namespace sluice::core::detail {

template <class Tag>
struct Id {
  static constexpr std::uint32_t kNilValue = UINT32_MAX;

  std::uint32_t value = kNilValue;

  constexpr Id() = default;
  constexpr explicit Id(std::uint32_t index) : value(index) {}

  static constexpr Id nil() { return Id{}; }
  constexpr bool is_nil() const { return value == kNilValue; }

  friend constexpr bool operator==(Id, Id) = default;
  friend constexpr auto operator<=>(Id, Id) = default;
};

}  // namespace sluice::core::detail
