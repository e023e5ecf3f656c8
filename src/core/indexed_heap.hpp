// A binary min-heap of record ids that remembers where each element sits, so an element can be
// removed or re-keyed in O(log n) without searching. The element's position is stored by the
// caller (in its own record) through the `Position` accessor; kNotInHeap means "not in this
// heap". Used for the deadline heap and the fair-queuing heaps of the scheduler.
//
// Invariant: for every i in heap, position(heap[i]) == i, and less(heap[parent(i)], heap[i])
// is never false-with-reversed-order (the usual heap property under `Less`).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace sluice::core::detail {

inline constexpr std::uint32_t kNotInHeap = UINT32_MAX;

/// IdT: the element type, a small id (e.g. Id<Tag>) copied by value.
/// Less(a, b): strict weak ordering on element ids.
/// Position(id) -> std::uint32_t&: the storage of that element's heap position.
template <class IdT, class Less, class Position>
class IndexedHeap {
 public:
  IndexedHeap(Less less, Position position) : less_(less), position_(position) {}

  bool empty() const { return heap_.empty(); }
  std::size_t size() const { return heap_.size(); }
  IdT top() const { return heap_.front(); }
  bool contains(IdT element) const { return position_(element) != kNotInHeap; }
  const std::vector<IdT>& elements() const { return heap_; }

  void push(IdT element) {
    std::uint32_t i = static_cast<std::uint32_t>(heap_.size());
    heap_.push_back(element);
    position_(element) = i;
    sift_up(i);
  }

  /// Removes `element`; a no-op when it is not in the heap.
  void erase(IdT element) {
    std::uint32_t i = position_(element);
    if (i == kNotInHeap) return;
    position_(element) = kNotInHeap;
    IdT last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    heap_[i] = last;
    position_(last) = i;
    update_at(i);
  }

  void pop() { erase(heap_.front()); }

  /// Restores the heap after `element`'s key changed (either direction).
  void update(IdT element) {
    std::uint32_t i = position_(element);
    if (i != kNotInHeap) update_at(i);
  }

  /// Points a copy of a heap at its own records (the comparator and position accessor of a copy
  /// still refer to the original's; see Scheduler::State's copy).
  void rebind(Less less, Position position) {
    less_ = less;
    position_ = position;
  }

  void clear() {
    for (IdT element : heap_)
      position_(element) = kNotInHeap;
    heap_.clear();
  }

 private:
  void update_at(std::uint32_t i) {
    if (i > 0 && less_(heap_[i], heap_[(i - 1) / 2])) {
      sift_up(i);
    } else {
      sift_down(i);
    }
  }

  void sift_up(std::uint32_t i) {
    IdT element = heap_[i];
    while (i > 0) {
      std::uint32_t parent = (i - 1) / 2;
      if (!less_(element, heap_[parent])) break;
      heap_[i] = heap_[parent];
      position_(heap_[i]) = i;
      i = parent;
    }
    heap_[i] = element;
    position_(element) = i;
  }

  void sift_down(std::uint32_t i) {
    IdT element = heap_[i];
    const std::uint32_t n = static_cast<std::uint32_t>(heap_.size());
    while (true) {
      std::uint32_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && less_(heap_[child + 1], heap_[child])) ++child;
      if (!less_(heap_[child], element)) break;
      heap_[i] = heap_[child];
      position_(heap_[i]) = i;
      i = child;
    }
    heap_[i] = element;
    position_(element) = i;
  }

  Less less_;
  Position position_;
  std::vector<IdT> heap_;
};

}  // namespace sluice::core::detail
