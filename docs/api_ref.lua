-- The one description of lray's public Lua API. scripts/docgen.lua makes
-- from it docs/reference.md (the API reference), types/library/*.d.lua (Lua
-- Language Server definitions) and lua/lray/luacheck_std.lua (a luacheck std),
-- so the three never drift; `make gen` rewrites them and `make gen-check`
-- (part of `make lint`) fails when they are stale. Prose about behaviour
-- lives in docs/api.md; this file gives every name, its types and one
-- paragraph.
--
-- A function is {name, text, params = {{name, type, text}...}, returns =
-- {{type, text}...}}; a "?" after a parameter name makes it optional, a
-- "..." name is the varargs. A class is {name, text, fields = {{name, type,
-- text}...}, methods = {function...}}; a method name "x:m" takes self, "x.m"
-- does not. Types are LuaLS types.

local function P(name, type, text) return { name = name, type = type, text = text } end
local function R(type, text) return { type = type, text = text } end

return {
  modules = {
    {
      name = "lray",
      title = "lray",
      text = "`local lray = require(\"lray\")`. Ray's programming model: tasks, actors and an object store.",
      sections = {
        {
          title = "Loading and lifecycle",
          functions = {
            { "lray.init", "Connects this driver to a cluster and returns its context. With no `address`"
              .. " it starts a local cluster owned by this driver, torn down by `shutdown` or at exit."
              .. " Called by the first `.remote`, `put` or `get` when not called before.",
              params = { P("opts?", "lray.InitOptions", "options; all optional") },
              returns = { R("lray.Context", "the cluster's context") } },
            { "lray.is_initialized", "True between `init` and `shutdown`, and always inside a task or actor.",
              returns = { R("boolean") } },
            { "lray.shutdown", "Disconnects and stops the local cluster this driver started. Does nothing"
              .. " when not initialized; runs by itself when the driver exits." },
          },
        },
        {
          title = "Remote functions and actors",
          functions = {
            { "lray.remote", "Makes a remote function from a function, or an actor class from a class"
              .. " table. Options may come first: `lray.remote({num_cpus = 2}, fn)`.",
              params = { P("opts_or_def", "lray.RemoteOptions|lray.ActorOptions|function|table",
                "options, or the definition"),
                P("def?", "function|table", "the definition, when options come first") },
              returns = { R("lray.RemoteFunction|lray.ActorClass") } },
            { "lray.get_actor", "The handle of the live actor with this name; raises a `ValueError` when"
              .. " there is none.",
              params = { P("name", "string"), P("opts?", "{namespace?: string}", "the name's namespace") },
              returns = { R("lray.ActorHandle") } },
            { "lray.kill", "Kills an actor now; its pending calls fail with `ActorDiedError`.",
              params = { P("actor", "lray.ActorHandle"),
                P("opts?", "{no_restart?: boolean}", "`no_restart = false` lets it restart (default true)") } },
          },
        },
        {
          title = "Objects",
          functions = {
            { "lray.put", "Stores a value once; pass the ref many times.",
              params = { P("value", "any") }, returns = { R("lray.ObjectRef") } },
            { "lray.get", "Waits for the value(s) of a ref, or for the first value of each ref of a list."
              .. " Raises the task's error (`TaskError`, ...) or `GetTimeoutError`.",
              params = { P("refs", "lray.ObjectRef|lray.ObjectRef[]", "one ref, or a list of refs"),
                P("opts?", "{timeout?: number}", "`timeout` in seconds") },
              returns = { R("any ...", "the values; for a list, a list of each ref's first value") } },
            { "lray.wait", "Waits until `num_returns` of the refs are ready or the timeout passes.",
              params = { P("refs", "lray.ObjectRef[]"),
                P("opts?", "{num_returns?: integer, timeout?: number}", "default 1 and no timeout") },
              returns = { R("lray.ObjectRef[]", "ready"), R("lray.ObjectRef[]", "not ready") } },
            { "lray.cancel", "Cancels the task that makes the ref; its `get` raises `TaskCancelledError`."
              .. " A soft cancel stops the task at the next instruction the Lua interpreter runs (a loop"
              .. " LuaJIT compiled that calls nothing never gets there, and the driver warns after 2 s);"
              .. " `force = true` kills its worker.",
              params = { P("ref", "lray.ObjectRef"),
                P("opts?", "{force?: boolean, recursive?: boolean}", "default soft, recursive") } },
            { "lray.array", "A typed numeric array (LuaJIT FFI) stored and read zero-copy; 0-based.",
              params = { P("ctype", "lray.ArrayType"),
                P("n_or_list", "integer|number[]", "a length (zero-filled) or the elements") },
              returns = { R("lray.Array") } },
          },
        },
        {
          title = "Resources and the cluster",
          functions = {
            { "lray.cluster_resources", "Total resources of the cluster, e.g. `{CPU = 2, GPU = 1, memory = ...}`.",
              returns = { R("table<string, number>") } },
            { "lray.available_resources", "The same keys, what is free now.",
              returns = { R("table<string, number>") } },
            { "lray.nodes", "The cluster's nodes.", returns = { R("lray.Node[]") } },
            { "lray.get_gpu_ids", "GPU ids held by the calling task or actor, e.g. `{0}`.",
              returns = { R("integer[]") } },
            { "lray.get_runtime_context", "Where the calling code runs.",
              returns = { R("lray.RuntimeContext") } },
          },
        },
        {
          title = "Time",
          functions = {
            { "lray.sleep", "Sleeps the calling process; never blocks other workers.",
              params = { P("seconds", "number") } },
            { "lray.now", "Monotonic seconds, sub-microsecond resolution.", returns = { R("number") } },
          },
        },
        {
          title = "Errors",
          functions = {
            { "lray.is_error", "True when `e` is an lray error, of type `etype` if given.",
              params = { P("e", "any"), P("etype?", "lray.ErrorType") }, returns = { R("boolean") } },
          },
          fields = {
            P("lray.errors", "lray.errors", "the error module: `lray.errors.new(type, message)` makes one"),
          },
        },
        {
          title = "Utilities",
          fields = {
            P("lray.util", "lray.util", "`ActorPool`, `Queue` and `Pool`, loaded on first use"),
          },
        },
      },
      classes = {
        { "lray.InitOptions", "Options of `lray.init`.", fields = {
          P("address?", "string", "nil: a local cluster; `\"auto\"`: the one `lray start` runs here; `\"host:port\"`"),
          P("token?", "string", "the cluster token for a `\"host:port\"` address (default: `$LRAY_TOKEN`, or the file `lray start` keeps on this machine)"),
          P("num_cpus?", "number", "CPUs of the local cluster (default: the machine's cores)"),
          P("num_gpus?", "number", "GPUs of the local cluster (default: detected)"),
          P("resources?", "table<string, number>", "custom resources, e.g. `{Custom = 4}`"),
          P("object_store_memory?", "number", "bytes of the shared-memory store (when it is full, objects spill to disk: `<session>/spill`, or `$LRAY_SPILL_DIR`)"),
          P("namespace?", "string", "namespace of this job"),
          P("log_to_driver?", "boolean", "default true: worker output appears here"),
          P("ignore_reinit_error?", "boolean", "default false: a second `init` raises"),
        } },
        { "lray.Context", "What `lray.init` returns.", fields = {
          P("address", "string"), P("node_id", "string"), P("session_dir", "string"),
          P("namespace", "string"), P("dashboard_url", "string"), P("job_id", "string"),
        } },
        { "lray.RemoteOptions", "Options of a remote function.", fields = {
          P("num_cpus?", "number", "default 1"), P("num_gpus?", "number"),
          P("resources?", "table<string, number>"), P("memory?", "number"),
          P("max_retries?", "integer", "re-runs when the worker dies (default 3; -1 forever)"),
          P("retry_exceptions?", "boolean", "also re-run on a Lua error"),
          P("num_returns?", "integer", "`.remote` returns this many refs"),
          P("name?", "string", "the task's name in messages and listings"),
          P("scheduling_strategy?", "any", "accepted, not used"),
        } },
        { "lray.ActorOptions", "Options of an actor class.", fields = {
          P("num_cpus?", "number", "held for the actor's life (default: 1 to place, 0 held)"),
          P("num_gpus?", "number"), P("resources?", "table<string, number>"), P("memory?", "number"),
          P("name?", "string", "unique in the namespace; `lray.get_actor` finds it"),
          P("namespace?", "string"),
          P("lifetime?", "\"detached\"|\"non_detached\"", "detached: outlives its creator"),
          P("get_if_exists?", "boolean", "with `name`: return the existing actor"),
          P("max_restarts?", "integer", "restarts after its process dies (-1 forever)"),
          P("max_task_retries?", "integer", "re-sends of a call whose actor died (-1 forever)"),
          P("max_concurrency?", "integer", ">1: methods run as coroutines"),
          P("concurrency_groups?", "table<string, integer>", "named groups and their concurrency"),
          P("scheduling_strategy?", "any", "accepted, not used"),
        } },
        { "lray.ObjectRef", "A future for a value in the object store.", methods = {
          { "lray.ObjectRef:hex", "The object id in hex.", returns = { R("string") } },
          { "lray.ObjectRef:release", "Drops this reference now, not at garbage collection." },
        } },
        { "lray.RemoteFunction", "What `lray.remote(fn)` returns.", methods = {
          { "lray.RemoteFunction.remote", "Runs the function as a task; `f:remote(...)` is the same.",
            params = { P("...", "any", "arguments; top-level ObjectRefs are resolved") },
            returns = { R("lray.ObjectRef ...", "one ref per `num_returns`") } },
          { "lray.RemoteFunction.options", "A new remote function with these options merged in.",
            params = { P("opts", "lray.RemoteOptions") }, returns = { R("lray.RemoteFunction") } },
        } },
        { "lray.ActorClass", "What `lray.remote(Class)` returns.", methods = {
          { "lray.ActorClass.remote", "Creates an actor; its `init` runs with these arguments.",
            params = { P("...", "any") }, returns = { R("lray.ActorHandle") } },
          { "lray.ActorClass.options", "A new actor class with these options merged in.",
            params = { P("opts", "lray.ActorOptions") }, returns = { R("lray.ActorClass") } },
        } },
        { "lray.ActorHandle", "An actor. Each method `m` of its class is `handle.m.remote(...)`,"
          .. " which returns an ObjectRef; `handle.m.options({num_returns = n})` changes one call.",
          fields = { P("[string]", "lray.ActorMethod") } },
        { "lray.ActorMethod", "One method of an actor handle.", methods = {
          { "lray.ActorMethod.remote", "Calls the method; calls from one caller run in order.",
            params = { P("...", "any") }, returns = { R("lray.ObjectRef ...") } },
          { "lray.ActorMethod.options", "This method with call options.",
            params = { P("opts", "{num_returns?: integer, name?: string}") },
            returns = { R("lray.ActorMethod") } },
        } },
        { "lray.Array", "A typed numeric array; `a[i]` for i in 0..#a-1, `#a` its length. A stored"
          .. " array read back is a read-only view: `copy` it to change it.", methods = {
          { "lray.Array:ctype", "Its element type.", returns = { R("lray.ArrayType") } },
          { "lray.Array:totable", "Its elements as a Lua list (1-based).", returns = { R("number[]") } },
          { "lray.Array:nbytes", "Its size in bytes.", returns = { R("integer") } },
          { "lray.Array:ptr", "An FFI pointer to its first element.", returns = { R("ffi.cdata*") } },
          { "lray.Array:copy", "A new writable array with the same type and elements.",
            returns = { R("lray.Array") } },
        } },
        { "lray.Node", "One node of `lray.nodes()`.", fields = {
          P("node_id", "string"), P("address", "string"), P("alive", "boolean"),
          P("resources", "table<string, number>"),
        } },
        { "lray.RuntimeContext", "What `lray.get_runtime_context()` returns.", fields = {
          P("job_id", "string"), P("node_id", "string"), P("worker_id?", "string"),
          P("task_id?", "string"), P("actor_id?", "string"), P("namespace", "string"),
          P("gpu_ids", "integer[]"),
        } },
        { "lray.Error", "Every error lray raises. `tostring(e)` gives type, message and traceback.", fields = {
          P("type", "lray.ErrorType"), P("message", "string"),
          P("traceback?", "string", "the remote Lua traceback"),
          P("cause?", "any", "the value the task raised, when it could be sent back"),
        } },
        { "lray.errors", "`lray.errors`.", methods = {
          { "lray.errors.new", "A new error value.", params = { P("etype", "lray.ErrorType"),
            P("message", "string"), P("fields?", "table", "more fields, e.g. `cause`") },
            returns = { R("lray.Error") } },
          { "lray.errors.is_error", "The same as `lray.is_error`.",
            params = { P("e", "any"), P("etype?", "lray.ErrorType") }, returns = { R("boolean") } },
        } },
        { "lray.util", "`lray.util`.", fields = {
          P("ActorPool", "lray.util.ActorPool"), P("Queue", "lray.util.Queue"), P("Pool", "lray.util.Pool"),
        } },
        { "lray.util.ActorPool", "Spreads calls over a set of actors (docs/util.md).", methods = {
          { "lray.util.ActorPool.new", "A pool of these actors.", params = { P("actors", "lray.ActorHandle[]") },
            returns = { R("lray.util.ActorPool") } },
          { "lray.util.ActorPool:map", "Iterates the results in the order of `values`.",
            params = { P("fn", "fun(a: lray.ActorHandle, v: any): lray.ObjectRef"), P("values", "any[]") },
            returns = { R("fun(): any") } },
          { "lray.util.ActorPool:map_unordered", "Iterates the results in completion order.",
            params = { P("fn", "fun(a: lray.ActorHandle, v: any): lray.ObjectRef"), P("values", "any[]") },
            returns = { R("fun(): any") } },
          { "lray.util.ActorPool:submit", "Schedules `fn(actor, value)` on an idle actor, or queues it.",
            params = { P("fn", "fun(a: lray.ActorHandle, v: any): lray.ObjectRef"), P("value", "any") } },
          { "lray.util.ActorPool:has_next", "Results are pending.", returns = { R("boolean") } },
          { "lray.util.ActorPool:get_next", "The next result in submission order.",
            params = { P("timeout?", "number") }, returns = { R("any") } },
          { "lray.util.ActorPool:get_next_unordered", "The next result to finish.",
            params = { P("timeout?", "number") }, returns = { R("any") } },
          { "lray.util.ActorPool:has_free", "An actor is idle.", returns = { R("boolean") } },
          { "lray.util.ActorPool:pop_idle", "Takes an idle actor out of the pool.",
            returns = { R("lray.ActorHandle?") } },
          { "lray.util.ActorPool:push", "Adds an actor to the pool.", params = { P("actor", "lray.ActorHandle") } },
        } },
        { "lray.util.Queue", "A FIFO queue kept by an actor (docs/util.md).", methods = {
          { "lray.util.Queue.new", "A new queue; `maxsize` 0 or nil: unbounded.",
            params = { P("maxsize?", "integer"), P("opts?", "{actor_options?: lray.ActorOptions}") },
            returns = { R("lray.util.Queue") } },
          { "lray.util.Queue:put", "Puts an item; waits while full, or raises `Full`.",
            params = { P("item", "any"), P("opts?", "{block?: boolean, timeout?: number}|boolean"),
              P("timeout?", "number") } },
          { "lray.util.Queue:get", "Takes the oldest item; waits while empty, or raises `Empty`.",
            params = { P("opts?", "{block?: boolean, timeout?: number}|boolean"), P("timeout?", "number") },
            returns = { R("any") } },
          { "lray.util.Queue:put_nowait", "Puts an item or raises `Full` at once.", params = { P("item", "any") } },
          { "lray.util.Queue:get_nowait", "Takes an item or raises `Empty` at once.", returns = { R("any") } },
          { "lray.util.Queue:put_nowait_batch", "Puts all the items, or raises `Full` and puts none.",
            params = { P("items", "any[]") } },
          { "lray.util.Queue:get_nowait_batch", "Takes n items, or raises `Empty` and takes none.",
            params = { P("n", "integer") }, returns = { R("any[]") } },
          { "lray.util.Queue:size", "The number of items.", returns = { R("integer") } },
          { "lray.util.Queue:qsize", "The same as `size`.", returns = { R("integer") } },
          { "lray.util.Queue:empty", "No items.", returns = { R("boolean") } },
          { "lray.util.Queue:full", "At `maxsize`.", returns = { R("boolean") } },
          { "lray.util.Queue:shutdown", "Ends the queue's actor.",
            params = { P("opts?", "{force?: boolean, grace_period_s?: number}") } },
        } },
        { "lray.util.Pool", "A pool of worker actors running one function over many items, like"
          .. " Python's multiprocessing.Pool (docs/util.md).", methods = {
          { "lray.util.Pool.new", "A pool of `processes` actors (default: the cluster's CPUs).",
            params = { P("processes?", "integer", "how many actors"), P("opts?",
              "{initializer?: function, initargs?: any[], actor_options?: lray.ActorOptions}",
              "`initializer(table.unpack(initargs))` runs once in each actor") },
            returns = { R("lray.util.Pool") } },
          { "lray.util.Pool:map", "`fn` over every item, results in order.",
            params = { P("fn", "function"), P("items", "any[]"), P("chunksize?", "integer") },
            returns = { R("any[]") } },
          { "lray.util.Pool:map_async", "`map` without waiting.",
            params = { P("fn", "function"), P("items", "any[]"), P("chunksize?", "integer") },
            returns = { R("lray.util.AsyncResult") } },
          { "lray.util.Pool:imap", "Iterates `fn` over the items, in order.",
            params = { P("fn", "function"), P("items", "any[]"), P("chunksize?", "integer") },
            returns = { R("fun(): any") } },
          { "lray.util.Pool:imap_unordered", "Iterates `fn` over the items, in completion order.",
            params = { P("fn", "function"), P("items", "any[]"), P("chunksize?", "integer") },
            returns = { R("fun(): any") } },
          { "lray.util.Pool:starmap", "`fn(table.unpack(item))` over every item, in order.",
            params = { P("fn", "function"), P("items", "any[][]"), P("chunksize?", "integer") },
            returns = { R("any[]") } },
          { "lray.util.Pool:starmap_async", "`starmap` without waiting.",
            params = { P("fn", "function"), P("items", "any[][]"), P("chunksize?", "integer") },
            returns = { R("lray.util.AsyncResult") } },
          { "lray.util.Pool:apply", "`fn(...args)` on one worker, waited for.",
            params = { P("fn", "function"), P("args?", "any[]") }, returns = { R("any") } },
          { "lray.util.Pool:apply_async", "`apply` without waiting.",
            params = { P("fn", "function"), P("args?", "any[]") }, returns = { R("lray.util.AsyncResult") } },
          { "lray.util.Pool:close", "Accepts no more work." },
          { "lray.util.Pool:join", "Waits for the work after `close` or `terminate`." },
          { "lray.util.Pool:terminate", "Kills the pool's actors now." },
        } },
        { "lray.util.AsyncResult", "A result of `Pool`'s `*_async` calls.", methods = {
          { "lray.util.AsyncResult:get", "Waits for the result; raises what the work raised.",
            params = { P("timeout?", "number") }, returns = { R("any") } },
          { "lray.util.AsyncResult:wait", "Waits until ready or the timeout passes.",
            params = { P("timeout?", "number") } },
          { "lray.util.AsyncResult:ready", "Finished.", returns = { R("boolean") } },
          { "lray.util.AsyncResult:successful", "Finished without an error.", returns = { R("boolean") } },
        } },
      },
      aliases = {
        { "lray.ArrayType", { "\"double\"", "\"float\"", "\"int8_t\"", "\"uint8_t\"", "\"int16_t\"",
          "\"uint16_t\"", "\"int32_t\"", "\"uint32_t\"", "\"int64_t\"", "\"uint64_t\"" } },
        { "lray.ErrorType", { "\"TaskError\"", "\"ActorDiedError\"", "\"WorkerCrashedError\"",
          "\"ObjectLostError\"", "\"OwnerDiedError\"", "\"GetTimeoutError\"", "\"TaskCancelledError\"",
          "\"RayError\"", "\"ValueError\"", "\"Empty\"", "\"Full\"", "\"ObjectStoreFullError\"",
          "\"AuthenticationError\"" } },
      },
    },
    {
      name = "lray.testing",
      title = "lray.testing",
      text = "`local testing = require(\"lray.testing\")`. One cluster per spec file, checked for"
        .. " leaks at the end (docs/testing.md).",
      sections = {
        {
          title = "Clusters for specs",
          functions = {
            { "lray.testing.start", "Starts a local cluster with small fixed resources (`num_cpus = 2`,"
              .. " `num_gpus = 0` unless given) and returns lray and its context.",
              params = { P("opts?", "lray.testing.Options", "lray.init options and `nodes`") },
              returns = { R("lray", "the lray module"), R("lray.Context") } },
            { "lray.testing.stop", "Shuts the cluster down, then raises an error naming what it left"
              .. " behind (worker or node processes, shared memory) after `leak_wait` seconds." },
            { "lray.testing.ctx", "The running cluster's context, or nil.", returns = { R("lray.Context?") } },
            { "lray.testing.session_procs", "`\"pid cmdline\"` of the live processes of a session.",
              params = { P("session_dir", "string") }, returns = { R("string[]") } },
            { "lray.testing.shm_files", "Names of the `/dev/shm/lray-*` files, as a set.",
              returns = { R("table<string, true>") } },
          },
        },
      },
      classes = {
        { "lray.testing.Options", "Options of `lray.testing.start`: those of `lray.init` and these.",
          fields = {
          P("num_cpus?", "number", "default 2"), P("num_gpus?", "number", "default 0"),
          P("resources?", "table<string, number>"), P("object_store_memory?", "number"),
          P("namespace?", "string"), P("log_to_driver?", "boolean"),
          P("nodes?", "integer", "simulated nodes; only 1 until lray has multi-node clusters"),
          P("leak_wait?", "number", "seconds `stop` waits for processes to go (default 3)"),
        } },
      },
    },
  },
}
