// The one place that includes standalone Asio, so that every translation unit
// sees the same configuration.
#pragma once

// Asio 1.22 only detects C++20 coroutines on g++; clang with libstdc++ has them
// as well (DESIGN.md, toolchain facts).
#if defined(__clang__) && defined(__cpp_impl_coroutine)
#ifndef ASIO_HAS_CO_AWAIT
#define ASIO_HAS_CO_AWAIT 1
#endif
#ifndef ASIO_HAS_STD_COROUTINE
#define ASIO_HAS_STD_COROUTINE 1
#endif
#endif

#ifndef ASIO_NO_DEPRECATED
#define ASIO_NO_DEPRECATED 1
#endif

// Asio 1.22 picks aligned_alloc/free or operator new/delete for its
// recycling allocator from _GLIBCXX_HAVE_ALIGNED_ALLOC, which exists only once
// some libstdc++ header was included. Without this, a translation unit that
// reaches Asio first allocates with operator new what another frees with
// free() (an ODR violation AddressSanitizer reports as alloc-dealloc-mismatch).
#include <cstddef>

#include <asio.hpp>

#if ASIO_VERSION >= 102300
#include <asio/as_tuple.hpp>
#else
#include <asio/experimental/as_tuple.hpp>
#endif

namespace cluster::detail {

#if ASIO_VERSION >= 102300
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
#else
/// Completion token that reports errors as a tuple instead of throwing: the
/// I/O path works with error codes, exceptions are for the API boundary.
inline constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
#endif

}  // namespace cluster::detail
