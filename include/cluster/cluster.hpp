// Everything a user of cluster needs: include this one header.
#pragma once

#include <cluster/access_log.hpp>
#include <cluster/body.hpp>
#include <cluster/cors.hpp>
#include <cluster/endpoint.hpp>
#include <cluster/handler.hpp>
#include <cluster/headers.hpp>
#include <cluster/lifecycle.hpp>
#include <cluster/messaging.hpp>
#include <cluster/middleware.hpp>
#include <cluster/options.hpp>
#include <cluster/query.hpp>
#include <cluster/request.hpp>
#include <cluster/request_id.hpp>
#include <cluster/response.hpp>
#include <cluster/route.hpp>
#include <cluster/router.hpp>
#include <cluster/run.hpp>
#include <cluster/shared.hpp>
#include <cluster/status.hpp>
#include <cluster/url.hpp>
