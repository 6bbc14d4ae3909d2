-- quickstart.lua: a five-minute tour of lray (what `make run` runs).
--
-- Run it from the repository root:   build/lray examples/quickstart.lua
--
-- It starts an embedded cluster, runs tasks in parallel, stores an object,
-- talks to an actor, waits for the first of several results, catches a remote
-- error, and shuts down. It takes well under a second.
local lray = require("lray")

local ctx = lray.init()
print(("1. lray.init(): started a local cluster (namespace %s)"):format(ctx.namespace))

-- A remote function: .remote() returns an ObjectRef at once, the work runs in a worker.
local square = lray.remote(function(x) return x * x end)
local refs = {}
for i = 1, 4 do refs[i] = square.remote(i) end
print("2. squares computed in parallel: " .. table.concat(lray.get(refs), ", "))

-- lray.put stores a value once; the ref can be passed to many tasks.
local data = lray.put({ 10, 20, 30 })
local total = lray.remote(function(t) local s = 0; for _, v in ipairs(t) do s = s + v end; return s end)
print("3. lray.put a table, summed remotely: " .. lray.get(total.remote(data)))

-- An actor: a class whose instance lives in its own worker process.
local Counter = {}
function Counter:init(start) self.n = start or 0 end
function Counter:incr(by) self.n = self.n + (by or 1); return self.n end
local counter = lray.remote(Counter).remote(100)
counter.incr.remote()
counter.incr.remote(5)
print("4. actor Counter after incr(), incr(5): " .. lray.get(counter.incr.remote(0)))

-- lray.wait returns as soon as num_returns results are ready.
local nap = lray.remote(function(s) lray.sleep(s); return s end)
local ready, not_ready = lray.wait({ nap.remote(0.5), nap.remote(0.01) }, { num_returns = 1 })
print(("5. lray.wait: first ready slept %gs, %d still running"):format(lray.get(ready[1]), #not_ready))

-- A Lua error in a task comes back as a TaskError when you lray.get it.
local fail = lray.remote(function() error("boom") end)
local ok, err = pcall(lray.get, fail.remote())
print(("6. remote error caught: ok=%s, is TaskError=%s"):format(tostring(ok), tostring(lray.is_error(err, "TaskError"))))

lray.shutdown()
print("7. lray.shutdown(): done")
