// The idle list: fairness accounts remembered while idle, and their reclamation.
//
// An account whose last request is done (no subqueue left) is forgotten at once
// when its tag is not ahead of its class's virtual time: a newcomer would start there anyway.
// Otherwise it used more than its share, and it is remembered so that going idle cannot wipe
// that debt. The remembered accounts form the idle list, in the order they went idle (longest
// idle first), intrusive and doubly linked, so that every step below is O(1):
//   * a request for a remembered key unlinks its account (it is active again);
//   * every retirement moves a cursor kReclaimSteps (2) accounts further round the list,
//     forgetting those whose class's virtual time has caught up with their tag. The cursor moves
//     two places per retirement and the list grows by at most one, so it laps the list: an
//     account that owes nothing any more is forgotten within 1.5 x (list length) retirements.
//     Only a move of some class's virtual time can make a listed account reclaimable, so once
//     the cursor completes a lap during which none moved, it rests until one does (a flood of
//     new keys never moves it: each starts at the virtual time);
//   * an account joining a list of kMaxIdleAccounts first forgets the head, the longest idle,
//     debt and all: the price of bounded memory, paid by the key least likely to come back.
// So the work spent on idle accounts is at most kReclaimSteps + 1 visits per request, however
// many keys were ever seen (a new X-User-Id with every request does not make later ones dearer).
// Keeping an account that owes nothing a little longer changes no decision: when its key
// returns it starts at max(tag, virtual time) = the virtual time, exactly as a new account. An
// order by tag per class would forget each one the moment the virtual time passes it, at
// O(log n) per retirement, for no difference in fairness.
// Invariants: an account is on the idle list iff it is live and has no subqueue; a listed
// account is in no heap and its tag no longer changes (nothing of it is in flight to charge);
// idle_count is the list's length, <= kMaxIdleAccounts; the cursor is nil or a listed account;
// while the list is settled (settled_moves == vtime_moves) every listed account owes.
#include <cassert>

#include "scheduler_state.hpp"

namespace sluice::core {

namespace {

// Idle accounts examined each time an account retires. More than one, so the reclamation cursor
// outruns the idle list's growth and laps it (see the top of this file).
constexpr int kReclaimSteps = 2;

}  // namespace

// Account a has no subqueue left (nothing parked, nothing in flight): forget it if it owes
// nothing, else remember it on the idle list, making room and reclaiming as described at the top of
// this file.
void Scheduler::State::maybe_retire_account(AccountId a) {
  Account& acc = accounts[a];
  if (!acc.subqueues.empty()) return;
  assert(!acc.idle_listed);
  if (acc.tag <= classes[acc.class_id].vtime) {
    erase_account(a);
  } else {
    if (idle_count >= kMaxIdleAccounts) {
      ++idle_visits;
      forget_idle(idle_head);  // the longest idle gives up its debt: memory stays bounded
    }
    idle_push(a);
  }
  reclaim_idle();
}

// Examines the next kReclaimSteps accounts of the idle list (wrapping round), forgetting
// those whose class's virtual time has caught up with their tag.
void Scheduler::State::reclaim_idle() {
  for (int step = 0; step < kReclaimSteps && idle_count > 0; ++step) {
    if (settled_moves == vtime_moves) return;  // nothing to forget until a virtual time moves
    if (idle_cursor.is_nil()) {
      idle_cursor = idle_head;
      lap_moves = vtime_moves;
    }
    const AccountId a = idle_cursor;
    const Account& acc = accounts[a];
    idle_cursor = acc.idle_next;
    ++idle_visits;
    if (acc.tag <= classes[acc.class_id].vtime) forget_idle(a);
    // A whole lap without a move: every account it passed, and every one that joined since
    // (each joins owing), still owes.
    if (idle_cursor.is_nil() && lap_moves == vtime_moves) settled_moves = vtime_moves;
  }
}

void Scheduler::State::idle_push(AccountId a) {
  Account& acc = accounts[a];
  acc.idle_listed = true;
  acc.idle_prev = idle_tail;
  acc.idle_next = AccountId::nil();
  if (!idle_tail.is_nil()) {
    accounts[idle_tail].idle_next = a;
  } else {
    idle_head = a;
  }
  idle_tail = a;
  ++idle_count;
}

void Scheduler::State::idle_unlink(AccountId a) {
  Account& acc = accounts[a];
  assert(acc.idle_listed);
  if (idle_cursor == a) idle_cursor = acc.idle_next;
  if (!acc.idle_prev.is_nil()) {
    accounts[acc.idle_prev].idle_next = acc.idle_next;
  } else {
    idle_head = acc.idle_next;
  }
  if (!acc.idle_next.is_nil()) {
    accounts[acc.idle_next].idle_prev = acc.idle_prev;
  } else {
    idle_tail = acc.idle_prev;
  }
  acc.idle_prev = acc.idle_next = AccountId::nil();
  acc.idle_listed = false;
  --idle_count;
}

void Scheduler::State::forget_idle(AccountId a) {
  idle_unlink(a);
  erase_account(a);
}

}  // namespace sluice::core
