// Boost.Asio and Boost.Beast compiled once for the whole project (separate compilation).
// Every target that does I/O links sluice_asio, which defines BOOST_ASIO_SEPARATE_COMPILATION
// and BOOST_BEAST_SEPARATE_COMPILATION for it, so no other translation unit instantiates the
// library's non-template code. This file is slow to compile (~40 s); it rarely changes.
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
