-- 03_message_actor.lua
-- Ports seed 03 "A Guided Tour of Ray Core: Ray Actor Tree Pattern",
-- Example 3 "Passing Actor handles to Ray Tasks": three worker tasks receive
-- the handle of a MessageActor and post messages to it, while the driver
-- fetches and clears the new messages.
--
-- Run from the repository root:   build/lray examples/03_message_actor.lua
--
-- Scaled down: workers sleep 0.05 s between messages instead of
-- time.sleep(1), and the driver polls every 0.05 s. After the tutorial's ten
-- polls this port waits for the workers and fetches the last messages too, so
-- that all 30 messages are shown.
local lray = require("lray")

local SLEEP = 0.05                -- time.sleep(1) in the tutorial

local MessageActor = {}

function MessageActor:init()
  -- Keep the state of all the messages received
  self.messages = {}
end

function MessageActor:add_message(message)
  self.messages[#self.messages + 1] = message
end

-- Return all messages and clear them
function MessageActor:get_and_clear_messages()
  local messages = self.messages
  self.messages = {}
  return messages
end

-- A worker doing some work (updating a DB, posting a tweet, checking a
-- process...) that then sends a message to the actor.
local worker = lray.remote(function(message_actor, w)
  local last
  for i = 0, 9 do
    lray.sleep(SLEEP)
    last = message_actor.add_message.remote(("Message %d from worker %d."):format(i, w))
  end
  lray.get(last)                  -- the actor has all our messages once the last one is in
end)

local function show(list)
  if #list == 0 then return "{}" end
  return "{'" .. table.concat(list, "', '") .. "'}"
end

-- 4 logical CPUs: the three (mostly sleeping) tasks run side by side, as on
-- the tutorial's bigger machine, even on a 2-core box.
lray.init({ num_cpus = 4 })

local message_actor = lray.remote(MessageActor).remote()

-- Start three worker tasks that each get the handle to the MessageActor.
local refs = {}
for w = 0, 2 do refs[#refs + 1] = worker.remote(message_actor, w) end
for _, r in ipairs(refs) do print(tostring(r)) end

-- Since the workers are already launched, let's get the actor's state.
local total = 0
for _ = 1, 10 do
  local new_messages = lray.get(message_actor.get_and_clear_messages.remote())
  total = total + #new_messages
  print("New messages:\n" .. show(new_messages))
  lray.sleep(SLEEP)
end

-- Wait for the workers, then fetch what is left.
lray.get(refs)
local rest = lray.get(message_actor.get_and_clear_messages.remote())
total = total + #rest
print("Last messages:\n" .. show(rest))
print(("Received %d messages from 3 workers"):format(total))

lray.shutdown()
