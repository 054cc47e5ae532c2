"""Lua bundles and manifests for the demo catalog: a handful of realistic shapes
(polling an HTTP device, syncing a SQL database, a heartbeat, notifying a webhook) that
the demo integrations vary."""
from __future__ import annotations

HEARTBEAT = {
    "manifest": {
        "configSchema": {
            "type": "object",
            "properties": {"site": {"type": "string", "title": "Site name", "default": "HQ"}},
        },
        "resources": {},
        "permissions": ["integration.containers", "integration.cache", "log"],
        "dataContainerSchemas": {
            "beats": {"type": "object", "properties": {"at": {"type": "integer"}, "site": {"type": "string"}},
                      "required": ["at"]},
        },
        "handlers": {
            "beat": {"type": "timer", "file": "main.lua", "function": "beat", "schedule": {"every": "1m"}},
            "last": {"type": "rpc", "file": "main.lua", "function": "last",
                     "inputSchema": {"type": "object"}, "outputSchema": {"type": "object"}},
        },
    },
    "files": {
        "main.lua": """-- A heartbeat: records when it last ran, per site.
function beat(ctx, input)
  local now = os.time()
  ctx.integration.containersSet("beats", "last", { at = now, site = ctx.config.site })
  local count = (ctx.integration.cacheGet("count") or 0) + 1
  ctx.integration.cacheSet({ key = "count", value = count, ttl = 86400 })
  ctx.log.info("beat", { site = ctx.config.site, count = count })
  return { at = now, count = count }
end

function last(ctx, input)
  return { last = ctx.integration.containersGet("beats", "last") }
end
""",
    },
}

SQL_SYNC = {
    "manifest": {
        "configSchema": {
            "type": "object",
            "properties": {
                "table": {"type": "string", "title": "Orders table", "default": "orders"},
                "batch": {"type": "integer", "title": "Batch size", "minimum": 1, "maximum": 500, "default": 50},
            },
        },
        "resources": {"erp": {"kind": "sql", "description": "The ERP database"}},
        "permissions": ["device.sql.read", "integration.containers", "log"],
        "dataContainerSchemas": {
            "orders": {"type": "object", "properties": {"id": {"type": "integer"}, "state": {"type": "string"}},
                       "required": ["id"]},
        },
        "handlers": {
            "sync": {"type": "timer", "file": "sync.lua", "function": "sync", "schedule": {"every": "1m"},
                     "retry": {"attempts": 3, "backoff": 10}},
            "count": {"type": "rpc", "file": "sync.lua", "function": "count"},
        },
    },
    "files": {
        "sync.lua": """-- Copies open orders from the ERP into the instance's container.
function sync(ctx, input)
  local rows = ctx.device.sql("erp", "SELECT id, state FROM orders WHERE state != ? ORDER BY id LIMIT ?",
                              { "closed", ctx.config.batch })
  for _, row in ipairs(rows) do
    ctx.integration.containersSet("orders", tostring(row.id), { id = row.id, state = row.state })
  end
  ctx.log.info("orders synced", { count = #rows })
  return { synced = #rows }
end

function count(ctx, input)
  return { orders = #ctx.integration.containersList("orders") }
end
""",
    },
}

HTTP_POLL = {
    "manifest": {
        "configSchema": {
            "type": "object",
            "properties": {
                "site": {"type": "string", "title": "Site name"},
                "apiKey": {"type": "string", "format": "password", "title": "API key"},
                "statusPath": {"type": "string", "title": "Status path", "default": "/api/status"},
            },
            "required": ["site", "apiKey"],
        },
        "resources": {"device": {"kind": "http", "description": "The device's HTTP API"}},
        "permissions": ["device.http", "integration.cache", "integration.containers", "log"],
        "dataContainerSchemas": {
            "status": {"type": "object", "properties": {"code": {"type": "integer"}}, "required": ["code"]},
        },
        "handlers": {
            "poll": {"type": "timer", "file": "main.lua", "function": "poll", "schedule": {"every": "5m"}},
            "status": {"type": "rpc", "file": "main.lua", "function": "status"},
            "onAlert": {"type": "event", "event": "device.alert", "file": "main.lua", "function": "on_alert"},
            "install": {"type": "lifecycle", "on": "install", "file": "lifecycle.lua", "function": "install"},
        },
    },
    "files": {
        "main.lua": """-- Polls the device's status endpoint and keeps the latest answer.
function poll(ctx, input)
  local resp = ctx.device.http("device", {
    method = "GET", path = ctx.config.statusPath, headers = { ["X-Api-Key"] = ctx.config.apiKey },
  })
  ctx.integration.cacheSet({ key = "status", value = resp.body, ttl = 600 })
  ctx.integration.containersSet("status", "last", { code = resp.status })
  ctx.log.info("polled", { code = resp.status, site = ctx.config.site })
  return { status = resp.status }
end

function status(ctx, input)
  return { cached = ctx.integration.cacheGet("status"), last = ctx.integration.containersGet("status", "last") }
end

function on_alert(ctx, input)
  ctx.log.warn("device alert", { payload = input.payload })
  return { handled = true }
end
""",
        "lifecycle.lua": """function install(ctx, input)
  ctx.log.info("installed", { site = ctx.config.site })
  return { ok = true }
end
""",
    },
}

WEBHOOK_NOTIFY = {
    "manifest": {
        "configSchema": {
            "type": "object",
            "properties": {
                "channel": {"type": "string", "title": "Channel", "default": "#ops"},
                "token": {"type": "string", "writeOnly": True, "title": "Bot token"},
            },
            "required": ["token"],
        },
        "resources": {"chat": {"kind": "http", "description": "The chat service's webhook API"}},
        "permissions": ["device.http", "log"],
        "dataContainerSchemas": {},
        "handlers": {
            "notify": {"type": "event", "event": "alert.raised", "file": "notify.lua", "function": "notify",
                       "retry": {"attempts": 2, "backoff": 5}},
            "ping": {"type": "lifecycle", "on": "ping", "file": "notify.lua", "function": "ping"},
        },
    },
    "files": {
        "notify.lua": """-- Posts each alert event to a chat channel.
function notify(ctx, input)
  local resp = ctx.device.http("chat", {
    method = "POST", path = "/messages",
    headers = { Authorization = "Bearer " .. ctx.config.token },
    json = { channel = ctx.config.channel, text = tostring(input.payload and input.payload.text or input.event) },
  })
  ctx.log.info("notified", { status = resp.status })
  return { delivered = resp.status < 300 }
end

function ping(ctx, input)
  local resp = ctx.device.http("chat", { method = "GET", path = "/health" })
  return { ok = resp.status == 200 }
end
""",
    },
}

NIGHTLY_REPORT = {
    "manifest": {
        "configSchema": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "title": "Report time zone", "default": "Europe/Berlin"}},
        },
        "resources": {"db": {"kind": "sql", "description": "The database to report on"}},
        "permissions": ["device.sql.read", "tenant.cache", "log"],
        "dataContainerSchemas": {},
        "handlers": {
            "nightly": {"type": "timer", "file": "report.lua", "function": "nightly",
                        "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"}},
        },
    },
    "files": {
        "report.lua": """-- Counts the rows of each table every night and shares the totals tenant-wide.
function nightly(ctx, input)
  local tables = ctx.device.sql("db", "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", {})
  local totals = {}
  for _, t in ipairs(tables) do
    totals[t.name] = #ctx.device.sql("db", "SELECT 1 FROM " .. t.name, {})
  end
  ctx.cache.set("nightly-report", totals, 86400)
  ctx.log.info("report ready", { tables = #tables })
  return totals
end
""",
    },
}

SHAPES = {
    "heartbeat": HEARTBEAT,
    "sql_sync": SQL_SYNC,
    "http_poll": HTTP_POLL,
    "webhook_notify": WEBHOOK_NOTIFY,
    "nightly_report": NIGHTLY_REPORT,
}
