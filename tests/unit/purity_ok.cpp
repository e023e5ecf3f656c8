// Must compile with cmake/core_purity_guard.hpp force-included: every public core header.
#include "sluice/core/concurrency.hpp"
#include "sluice/core/cost.hpp"
#include "sluice/core/duration.hpp"
#include "sluice/core/labels.hpp"
#include "sluice/core/queue_order.hpp"
#include "sluice/core/request_registry.hpp"
#include "sluice/core/scheduler.hpp"
#include "sluice/core/splitmix.hpp"
#include "sluice/core/time.hpp"
#include "sluice/core/workload.hpp"
int main() {
  return 0;
}
