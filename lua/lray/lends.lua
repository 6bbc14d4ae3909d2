-- Lends between processes of one node, from both ends (docs/architecture.md,
-- "Objects and the store"; core/raylet/objdir.c, "Lenders and receivers that
-- leave").
--
-- A lender names its receiver (lend.to, the receiver's pid) when the
-- receiver is a process of this node, and names itself to it (push.from,
-- call.from), so the receiver can name it back in the lend of its reply.
-- The node then ends a lend whose receiver leaves. When the lender leaves
-- first, the node asks the receiver (lender_gone) about the lends it has not
-- claimed: a receiver unlends each whose message it never got and drops that
-- message should it still come (its lender is gone: nobody waits for it),
-- and settles the others itself, claiming what it ran and unlending what it
-- dropped. The messages in hand are tracked here (lray/_worker.lua's pushes
-- and calls). A result's lend (token "...:ret") is settled by its caller,
-- which reads the dead worker's connection to its end first (submit.lua,
-- actor.lua): lender_gone leaves those alone.
local core = require("lray._core")
local runtime = require("lray.runtime")

local pairs, ipairs = pairs, ipairs

local M = {}

local inhand = {}            -- token -> true: received, not yet claimed or unlent
local gave_up, ngave_up = {}, 0 -- token -> when: unlent unseen, dropped if it comes

-- A message given up that never comes (its lender died before writing it)
-- would leave its mark forever: marks older than GAVE_UP_TTL seconds go
-- once there are many.
local GAVE_UP_TTL, GAVE_UP_PRUNE_AT = 300, 4096

--- This process's pid, for a message to (and a lend naming) the peer at
--- addr, when that peer is a process of this node: reached over a unix
--- socket while this process reaches its node over one too. nil otherwise
--- (the node of the lend would not know the peer).
function M.local_pid(addr)
  if runtime.node_over_unix and type(addr) == "string" and addr:sub(1, 5) == "unix:" then
    return core.getpid()
  end
  return nil
end

--- A message lending token arrived. Returns false when it must be dropped
--- unused: its lender is gone and the node let the lend go.
function M.received(token)
  if not token then return true end
  if gave_up[token] then
    gave_up[token] = nil
    ngave_up = ngave_up - 1
    return false
  end
  inhand[token] = true
  return true
end

--- The received lend of token ends: claimed (what it brought is held here
--- now, after the refs queued so far) or, with unlend, given back unused.
--- lnode: the lender's node, when the message named it (message.lnode).
function M.settle(token, unlend, lnode)
  if not token then return end
  inhand[token] = nil
  if unlend then runtime.unlend(token, lnode) else runtime.claim(token, lnode) end
end

--- The message of token went back to its sender (rejected), which takes its
--- lend back; if the sender is gone, lender_gone does.
function M.returned(token)
  if token then inhand[token] = nil end
end

local function prune(now)
  for token, at in pairs(gave_up) do
    if now - at > GAVE_UP_TTL then
      gave_up[token] = nil
      ngave_up = ngave_up - 1
    end
  end
end

runtime.handlers.lender_gone = function(m)
  local now = core.now()
  for _, token in ipairs(m.tokens or {}) do
    if not inhand[token] and token:sub(-4) ~= ":ret" then
      if ngave_up >= GAVE_UP_PRUNE_AT then prune(now) end
      if not gave_up[token] then
        gave_up[token] = now
        ngave_up = ngave_up + 1
      end
      runtime.queue({ t = "unlend", token = token })
    end
  end
end

return M
