-- 05_actor_options.lua
-- Ports seed 05 "Ray Actors Revisited", section "Overriding with config()":
-- an actor class defined with num_cpus = 2 and a custom resource, and a
-- variant made with .options() that needs 1 CPU and no custom resource.
--
-- Run from the repository root:   build/lray examples/05_actor_options.lua
--
-- Python's resources=None becomes resources = {} (a table-valued option given
-- to options() replaces the old one whole). The embedded node is given 4 CPUs
-- and one CustomResource so both actors fit; the example prints what each
-- actor holds. Runs in about a second.
local lray = require("lray")

local Foo = {}

function Foo:method()
  return 1
end

local function free()
  local a = lray.available_resources()
  return ("CPU %g, CustomResource %g"):format(a.CPU or 0, a.CustomResource or 0)
end

lray.init({ num_cpus = 4, resources = { CustomResource = 1 } })
print("available at start: " .. free())

local RFoo = lray.remote({ num_cpus = 2, resources = { CustomResource = 1 } }, Foo)
local Bar = RFoo.options({ num_cpus = 1, resources = {} })

local foo = RFoo.remote()
print("Foo.method() = " .. lray.get(foo.method.remote()))
print("available while Foo lives: " .. free())

local bar = Bar.remote()
print("Bar.method() = " .. lray.get(bar.method.remote()))
print("available while Foo and Bar live: " .. free())

lray.kill(foo)
lray.kill(bar)
-- the node gives the resources back once it has seen both processes end
local deadline = lray.now() + 2
while lray.available_resources().CPU < 4 and lray.now() < deadline do lray.sleep(0.02) end
print("available after killing both: " .. free())

lray.shutdown()
