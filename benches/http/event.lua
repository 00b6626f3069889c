-- wrk: event detail reads. Env: EMS_EVENT.
request = function()
  return wrk.format("GET", "/events/" .. os.getenv("EMS_EVENT"))
end
