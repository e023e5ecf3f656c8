// The production admission gate: BasicAdmissionGate over std::chrono::steady_clock.
#include "sluice/net/admission_gate.hpp"

#include "sluice/net/admission_gate_impl.hpp"

namespace sluice::net {
template class BasicAdmissionGate<std::chrono::steady_clock>;
}  // namespace sluice::net
