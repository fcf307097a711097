// Everything a user of cluster needs: include this one header.
#pragma once

#include <cluster/endpoint.hpp>
#include <cluster/handler.hpp>
#include <cluster/headers.hpp>
#include <cluster/lifecycle.hpp>
#include <cluster/messaging.hpp>
#include <cluster/options.hpp>
#include <cluster/request.hpp>
#include <cluster/response.hpp>
#include <cluster/run.hpp>
#include <cluster/shared.hpp>
#include <cluster/status.hpp>
