#pragma once
// Record containers of the scheduler's state (scheduler_state.hpp): a heap that copies with its
// record, id ranges, and a slab of records with stable ids and a free list.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace sluice::core::detail {

// A heap owned by a record (a class's accounts, a band's classes) that copies with its record, so
// Scheduler::State can be copied whole (queue_order.cpp simulates admissions on a copy). A
// copied heap still compares through the original State: State::rebind() points it at its own.
template <class Heap>
class HeapBox {
 public:
  HeapBox() = default;
  HeapBox(std::unique_ptr<Heap> heap) : heap_(std::move(heap)) {}  // NOLINT: implicit by design
  HeapBox(const HeapBox& other)
      : heap_(other.heap_ ? std::make_unique<Heap>(*other.heap_) : nullptr) {}
  HeapBox(HeapBox&&) noexcept = default;
  HeapBox& operator=(const HeapBox& other) {
    if (this != &other) heap_ = other.heap_ ? std::make_unique<Heap>(*other.heap_) : nullptr;
    return *this;
  }
  HeapBox& operator=(HeapBox&&) noexcept = default;
  Heap* operator->() const { return heap_.get(); }
  Heap& operator*() const { return *heap_; }
  explicit operator bool() const { return heap_ != nullptr; }

 private:
  std::unique_ptr<Heap> heap_;
};

// Every id of a table with `size` slots, live or not, in index order (callers check `live`).
// A plain range rather than std::views: the fuzzers build with clang, whose C++20 support
// cannot compile libstdc++ 12's views.
template <class IdT>
struct IdRange {
  struct iterator {
    std::uint32_t index;
    IdT operator*() const { return IdT{index}; }
    iterator& operator++() {
      ++index;
      return *this;
    }
    bool operator==(const iterator& other) const = default;
  };
  std::uint32_t size;
  iterator begin() const { return {0}; }
  iterator end() const { return {size}; }
};

template <class IdT>
IdRange<IdT> all_ids(std::size_t size) {
  return {static_cast<std::uint32_t>(size)};
}

// A slab of records with stable ids and a free list.
template <class T, class IdT>
struct Slab {
  std::vector<T> items;
  std::vector<IdT> free;
  std::size_t live = 0;

  IdT alloc() {
    ++live;
    if (!free.empty()) {
      IdT id = free.back();
      free.pop_back();
      items[id.value] = T{};
      items[id.value].live = true;
      return id;
    }
    items.emplace_back();
    items.back().live = true;
    return IdT{static_cast<std::uint32_t>(items.size() - 1)};
  }
  void release(IdT id) {
    items[id.value] = T{};
    free.push_back(id);
    --live;
  }
  T& operator[](IdT id) { return items[id.value]; }
  const T& operator[](IdT id) const { return items[id.value]; }
  bool contains(IdT id) const { return id.value < items.size() && items[id.value].live; }
  auto ids() const { return all_ids<IdT>(items.size()); }
};

}  // namespace sluice::core::detail
