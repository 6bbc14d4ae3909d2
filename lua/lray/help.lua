-- Usage text of the `lray` command and every subcommand (`lray --help`,
-- `lray help CMD`, `lray CMD --help`). API.md "The `lray` command" is the
-- contract; this is its wording for the terminal.
local M = {}

local ORDER = { "script", "start", "stop", "status", "list", "logs", "timeline", "memory",
  "summary", "microbenchmark", "help" }

local CMDS = {
  script = { "lray script.lua [args]", "run a driver script (also -e, -l, -i, -v, - as in luajit)", [[
Runs a Lua script with lray loaded; `arg` is set as luajit sets it.
With no arguments, `lray` starts the interactive REPL.
Options (as in luajit): -e CHUNK, -l NAME, -i (REPL after the script), -v, - (stdin).
]] },
  start = { "lray start --head | --address HOST:PORT [options]",
    "start a cluster on this machine, or join one", [[
Starts a node in the background: the head of a new cluster (--head), which
prints how to connect and how other machines join, or a node that joins the
cluster whose head is at HOST:PORT (--address).
  --head                   start the head node of a new cluster
  --address HOST:PORT      join the cluster whose head listens there
  --token TOKEN            the cluster token (default: $LRAY_TOKEN, else the
                           token file of a cluster on this machine
                           ($LRAY_TMPDIR or /tmp/lray, /token); a new head
                           makes one)
  --port P                 TCP port for other machines and drivers (default
                           6380 for a head, any free one for a joining node)
  --host ADDR              address to listen on and advertise (default
                           127.0.0.1: nothing listens beyond this machine
                           unless asked)
  --block                  stay in the foreground until the node exits
  --num-cpus N             CPUs this node offers (default: detected cores)
  --num-gpus N             GPUs this node offers (default: detected GPUs)
  --resources JSON         custom resources, e.g. '{"Custom": 4}'
  --object-store-memory B  bytes of the shared-memory object store
  --spill-dir DIR          where objects spill when the store is full
                           (default: $LRAY_SPILL_DIR, else the node's
                           session directory); the node's files there go
                           when it stops
  --dashboard-port P       dashboard port (default 8265, the next free one if
                           taken; 0 turns the dashboard off)
  --dashboard-host ADDR    dashboard address (default 127.0.0.1; on another
                           address every request needs the cluster token)
]] },
  stop = { "lray stop", "stop the cluster this machine runs", [[
Stops the cluster processes `lray start` started on this machine.
]] },
  status = { "lray status", "nodes, resources used/total, pending demand", [[
Prints the nodes of the cluster, its resources used / total, the object store
use and the demand of tasks waiting for resources.
]] },
  list = { "lray list KIND [--filter K=V]... [--limit N] [--format table|json]",
    "list actors, tasks, objects, nodes, workers or jobs", [[
KIND is actors, tasks, objects, nodes, workers or jobs.
  --filter KEY=VALUE    keep records whose field KEY equals VALUE (as text, any
                        case); KEY!=VALUE keeps the others; repeat to combine
  --limit N             at most N records (default: all of them)
  --format table|json   a table (default) or a JSON array of records
Examples:
  lray list actors --filter state=ALIVE
  lray list tasks --filter name=square --filter state=FINISHED --limit 10
]] },
  logs = { "lray logs [--actor ID | --task ID | --pid PID | --node ID] [--tail N] [--follow]",
    "print the workers' log files", [[
Each worker's stdout and stderr are kept in log files of the session
(<session_dir>/logs/worker-PID.out and .err). With no selector, lists them.
  --actor ID    the log of the worker that runs this actor
  --task ID     the log of the worker that ran this task
  --pid PID     the log of this worker process
  --node ID     every log of this node
  --err         only stderr (both streams by default)
  --out         only stdout
  --tail N      only the last N lines
  --follow      keep printing what is appended (Ctrl-C to stop)
]] },
  timeline = { "lray timeline [FILE]", "task and actor-call events as Chrome trace JSON", [[
Writes the spans of the tasks and actor calls the workers ran, one row per
worker, in Chrome trace format ({"traceEvents": [...]}) to FILE (default:
lray-timeline-<time>.json). Open it at https://ui.perfetto.dev or
chrome://tracing.
]] },
  memory = { "lray memory [--limit N]", "objects in the store by size, with their call sites", [[
Lists the objects the cluster holds, largest first, with the call site
(file:line of the lray.put or .remote call) that created each, its owner's
pid and its reference count, then totals per call site.
]] },
  summary = { "lray summary tasks|actors|objects", "counts by function/class and state", [[
lray summary tasks     tasks by function name and state, with mean run time
lray summary actors    actors by class and state
lray summary objects   objects by call site, with their total size
]] },
  microbenchmark = { "lray microbenchmark [--filter PATTERN] [--json FILE] [--seconds S]",
    "the standard micro-benchmarks", [[
Runs the standard micro-benchmarks on an embedded cluster and prints one line
per figure: name, value +- stddev, unit.
]] },
  help = { "lray help [CMD] | lray --help | lray CMD --help", "usage of the commands", [[
Prints the usage of every command, or of CMD.
]] },
}

function M.overview()
  local lines = { "usage: lray [script.lua [args] | COMMAND [options]]", "",
    "With no arguments, an interactive REPL. Commands:" }
  for _, name in ipairs(ORDER) do
    local c = CMDS[name]
    lines[#lines + 1] = ("  %-16s %s"):format(name == "script" and "script.lua" or name, c[2])
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Every command reaches the cluster of $LRAY_ADDRESS, or the one running on"
  lines[#lines + 1] = "this machine (`lray start`, or a script's lray.init())."
  lines[#lines + 1] = "`lray help CMD` or `lray CMD --help` tells more about one."
  return table.concat(lines, "\n") .. "\n"
end

--- The usage of one command, or nil when there is none of that name.
function M.command(name)
  local c = CMDS[name]
  if not c then return nil end
  return "usage: " .. c[1] .. "\n\n" .. c[2]:sub(1, 1):upper() .. c[2]:sub(2) .. ".\n\n" .. c[3]
end

M.ORDER = ORDER
return M
