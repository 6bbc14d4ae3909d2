-- 04_base_class_subclasses.lua
-- Ports seed 04 "Remote Stateful Classes" (actors and progress of pi),
-- the example "Method tracking for Actors": a base class ActorCls and two
-- subclasses ActorClsOne and ActorClsTwo made into actors; the driver calls
-- their method() at random, counting locally, then asks each actor for its
-- own count.
--
-- Run from the repository root:   build/lray examples/04_base_class_subclasses.lua
--
-- Python's class inheritance becomes setmetatable(Sub, {__index = Base}); the
-- **kwargs of method() become one options table. Scaled down: method() sleeps
-- 0.01 s / 0.015 s instead of 1 s / 1.5 s, and the driver pauses 0.05 s
-- instead of 0.5 s between rounds. Runs in about a second.
local lray = require("lray")

local SCALE = 0.01                -- 1 tutorial second = 0.01 s here

local function show(t)
  local keys, parts = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = ("%s = %s"):format(k, tostring(t[k])) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- The base class
local ActorCls = {}

function ActorCls:init(name)
  self.name = name
  self.method_calls = { method = 0 }
end

function ActorCls:method(args)
  -- Overwrite this method in the subclass
end

-- Returns two values: the actor's name and its table of call counts.
function ActorCls:get_all_method_calls()
  return self:get_name(), self.method_calls
end

function ActorCls:get_name()
  return self.name
end

-- Two subclasses
local ActorClsOne = setmetatable({}, { __index = ActorCls })

function ActorClsOne:init(name)
  ActorCls.init(self, name)       -- super().__init__(name)
end

function ActorClsOne:method(args)
  -- do something with the arguments here
  lray.sleep(args.timeout)
  -- update the respective counter
  self.method_calls.method = self.method_calls.method + 1
end

local ActorClsTwo = setmetatable({}, { __index = ActorCls })

function ActorClsTwo:init(name)
  ActorCls.init(self, name)
end

function ActorClsTwo:method(args)
  lray.sleep(args.timeout)
  self.method_calls.method = self.method_calls.method + 1
end

lray.init()

local actor_one = lray.remote(ActorClsOne).remote("ActorClsOne")
local actor_two = lray.remote(ActorClsTwo).remote("ActorClsTwo")
print(tostring(actor_one))
print(tostring(actor_two))

-- A list of actor class names, and the actor instances keyed by name
local CALLERS_NAMES = { "ActorClsOne", "ActorClsTwo" }
local CALLERS_CLS_DICT = { ActorClsOne = actor_one, ActorClsTwo = actor_two }

-- Call each actor's method at random, keeping count locally for verification.
math.randomseed(os.time())
local count_dict = { ActorClsOne = 0, ActorClsTwo = 0 }
for _ = 1, #CALLERS_NAMES do
  for _ = 1, 15 do
    local name = CALLERS_NAMES[math.random(#CALLERS_NAMES)]
    count_dict[name] = count_dict[name] + 1
    if name == "ActorClsOne" then
      CALLERS_CLS_DICT[name].method.remote({ timeout = 1 * SCALE, store = "mongo_db" })
    else
      CALLERS_CLS_DICT[name].method.remote({ timeout = 1.5 * SCALE, store = "delta" })
    end
  end
  print("State of counts in this execution: " .. show(count_dict))
  lray.sleep(0.5 * SCALE * 10)
end

-- Fetch the count of all the methods called in each actor so far.
local parts = {}
for _, name in ipairs(CALLERS_NAMES) do
  local actor_name, calls = lray.get(CALLERS_CLS_DICT[name].get_all_method_calls.remote())
  parts[#parts + 1] = ("{%s, %s}"):format(actor_name, show(calls))
end
print("{" .. table.concat(parts, ", ") .. "}")

lray.shutdown()
