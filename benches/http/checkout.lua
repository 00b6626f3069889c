-- wrk: full checkouts of one unit, each under its own Idempotency-Key.
-- Env: EMS_TOKEN (a customer's access token), EMS_EVENT, EMS_TIER.
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  token = os.getenv("EMS_TOKEN")
  body = string.format('{"event_id":"%s","items":[{"tier_id":"%s","quantity":1}]}',
    os.getenv("EMS_EVENT"), os.getenv("EMS_TIER"))
  prefix = string.format("wrk-%d-%d", os.time(), tid)
  failures = 0
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/checkout", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = prefix .. "-" .. counter,
  }, body)
end

function response(status, headers, body)
  if status ~= 201 then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("failures")
  end
  io.write(string.format("checkouts not confirmed (status != 201): %d\n", total))
end
