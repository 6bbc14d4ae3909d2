/* The interactive REPL of the `lray` command. Lines come from libedit's
 * readline (editing, history in ~/.lray_history, Tab completion of globals
 * and fields) when stdin is a terminal, else from plain reads, so piped
 * `lray -i` works too. Each input is first compiled as `return <input>` so
 * expressions print their values; input that ends early ("... near <eof>")
 * continues on the next line. Values are pretty-printed by a small Lua
 * helper. Ctrl-C clears the line at the prompt and interrupts running code
 * (cli.c); Ctrl-D ends the REPL. Part of lray; MIT licensed. */
#include "main/repl.h"

#include <editline/readline.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/buf.h"
#include "common/def.h"
#include "main/cli.h"

#define PROMPT "> "
#define PROMPT2 ">> "
#define CHUNKNAME "=stdin"
#define HISTORY_MAX 1000
#define HISTORY_FILE ".lray_history"

typedef struct repl_s {
  lua_State *L;
  int tty;             /* stdin is a terminal: use libedit */
  char hist[PATH_MAX]; /* history file, "" for none */
  int show_ref;        /* registry refs of the Lua helpers */
  int complete_ref;
  char **matches; /* completions being handed to libedit */
  int nmatches, next_match;
} repl_t;

/* The pretty printer and the completer, two functions returned by one chunk.
 * Tables print nested to depth 4, keys sorted, at most 50 entries each and
 * 1000 in all; a __tostring metamethod (ObjectRefs, actor handles, lray
 * errors) wins; strings inside tables are %q-quoted. */
static const char helper_lua[] =
    "local type, tostring, next, rawget, getmetatable, pcall, select =\n"
    "  type, tostring, next, rawget, getmetatable, pcall, select\n"
    "local sort, concat = table.sort, table.concat\n"
    "local format, rep = string.format, string.rep\n"
    "local G = _G\n"
    "local MAX_DEPTH, MAX_ITEMS, MAX_TOTAL, WIDTH = 4, 50, 1000, 72\n"
    "local RANK = { number = 1, string = 2, boolean = 3 }\n"
    "local KEYWORDS = {}\n"
    "for w in (\"and break do else elseif end false for function goto if\"\n"
    "  .. \" in local nil not or repeat return then true until while\")\n"
    "  :gmatch(\"%S+\") do\n"
    "  KEYWORDS[w] = true\n"
    "end\n"
    "\n"
    "local function ident(k)\n"
    "  return type(k) == \"string\" and not KEYWORDS[k]\n"
    "    and k:match(\"^[%a_][%w_]*$\") ~= nil\n"
    "end\n"
    "\n"
    "local function quote(s)\n"
    "  return (format(\"%q\", s):gsub(\"\\\\\\n\", \"\\\\n\"))\n"
    "end\n"
    "\n"
    "local function key_lt(a, b)\n"
    "  local ta, tb = type(a), type(b)\n"
    "  if ta ~= tb then\n"
    "    local ra, rb = RANK[ta] or 4, RANK[tb] or 4\n"
    "    if ra ~= rb then return ra < rb end\n"
    "    return ta < tb\n"
    "  end\n"
    "  if ta == \"number\" or ta == \"string\" then return a < b end\n"
    "  if ta == \"boolean\" then return not a and b end\n"
    "  return tostring(a) < tostring(b)\n"
    "end\n"
    "\n"
    "local render\n"
    "\n"
    "local function render_key(k, depth, st)\n"
    "  if ident(k) then return k end\n"
    "  return \"[\" .. render(k, depth, st) .. \"]\"\n"
    "end\n"
    "\n"
    "-- Tables with a __tostring (ObjectRefs, actor handles, errors) or a\n"
    "-- protected metatable print via tostring; others print their\n"
    "-- contents.\n"
    "function render(v, depth, st)\n"
    "  local tv = type(v)\n"
    "  if tv == \"string\" then return quote(v) end\n"
    "  if tv ~= \"table\" then return tostring(v) end\n"
    "  local mt = getmetatable(v)\n"
    "  if mt ~= nil and (type(mt) ~= \"table\"\n"
    "    or rawget(mt, \"__tostring\") ~= nil) then\n"
    "    local ok, s = pcall(tostring, v)\n"
    "    if ok and type(s) == \"string\" then return s end\n"
    "    return \"<__tostring failed>\"\n"
    "  end\n"
    "  if st.path[v] then return \"<cycle>\" end\n"
    "  if next(v) == nil then return \"{}\" end\n"
    "  if depth >= MAX_DEPTH or st.left <= 0 then return \"{...}\" end\n"
    "  st.path[v] = true\n"
    "  local items, shown, len = {}, 0, 0\n"
    "  while rawget(v, len + 1) ~= nil do len = len + 1 end\n"
    "  for i = 1, len do\n"
    "    if shown >= MAX_ITEMS or st.left <= 0 then break end\n"
    "    shown, st.left = shown + 1, st.left - 1\n"
    "    items[shown] = render(rawget(v, i), depth + 1, st)\n"
    "  end\n"
    "  local keys, nk = {}, 0\n"
    "  for k in next, v do\n"
    "    if type(k) ~= \"number\" or k < 1 or k > len or k % 1 ~= 0 then\n"
    "      nk = nk + 1\n"
    "      keys[nk] = k\n"
    "    end\n"
    "  end\n"
    "  if nk <= 10000 then pcall(sort, keys, key_lt) end\n"
    "  for i = 1, nk do\n"
    "    if shown >= MAX_ITEMS or st.left <= 0 then break end\n"
    "    shown, st.left = shown + 1, st.left - 1\n"
    "    local k = keys[i]\n"
    "    items[shown] = render_key(k, depth + 1, st) .. \" = \"\n"
    "      .. render(rawget(v, k), depth + 1, st)\n"
    "  end\n"
    "  st.path[v] = nil\n"
    "  local narr = shown < len and shown or len\n"
    "  if len + nk > shown then\n"
    "    items[shown + 1] = format(\"... (%d more)\", len + nk - shown)\n"
    "  end\n"
    "  local flat = \"{ \" .. concat(items, \", \") .. \" }\"\n"
    "  if #flat <= WIDTH and not flat:find(\"\\n\", 1, true) then\n"
    "    return flat\n"
    "  end\n"
    "  -- Too long for one line: one entry per line, but short array items\n"
    "  -- packed greedily.\n"
    "  local pad = rep(\"  \", depth + 1)\n"
    "  local lines, cur = {}, nil\n"
    "  for i = 1, #items do\n"
    "    local it = items[i] .. (i < #items and \",\" or \"\")\n"
    "    if cur and i <= narr and not it:find(\"\\n\", 1, true)\n"
    "      and #pad + #cur + 1 + #it <= WIDTH then\n"
    "      cur = cur .. \" \" .. it\n"
    "    else\n"
    "      lines[#lines + 1] = cur\n"
    "      cur = it\n"
    "      if i > narr or it:find(\"\\n\", 1, true) then\n"
    "        lines[#lines + 1] = cur\n"
    "        cur = nil\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  lines[#lines + 1] = cur\n"
    "  return \"{\\n\" .. pad .. concat(lines, \"\\n\" .. pad) .. \"\\n\"\n"
    "    .. rep(\"  \", depth) .. \"}\"\n"
    "end\n"
    "\n"
    "-- The values of one evaluation, tab-separated; strings raw at top\n"
    "-- level.\n"
    "local function show(...)\n"
    "  local n, out = select(\"#\", ...), { ... }\n"
    "  for i = 1, n do\n"
    "    if type(out[i]) ~= \"string\" then\n"
    "      out[i] = render(out[i], 0, { path = {}, left = MAX_TOTAL })\n"
    "    end\n"
    "  end\n"
    "  return concat(out, \"\\t\", 1, n)\n"
    "end\n"
    "\n"
    "-- Raw lookup that follows __index tables only: completion runs no\n"
    "-- code.\n"
    "local function lookup(v, k)\n"
    "  for _ = 1, 8 do\n"
    "    if type(v) == \"table\" then\n"
    "      local r = rawget(v, k)\n"
    "      if r ~= nil then return r end\n"
    "    end\n"
    "    local mt = getmetatable(v)\n"
    "    v = type(mt) == \"table\" and rawget(mt, \"__index\")\n"
    "    if type(v) ~= \"table\" then return nil end\n"
    "  end\n"
    "end\n"
    "\n"
    "-- Completions of a word such as \"pri\", \"lray.ge\" or \"obj:me\".\n"
    "local function complete(word)\n"
    "  local head, sep, last = word:match(\"^(.*)([.:])([%w_]*)$\")\n"
    "  local v, out, seen = G, {}, {}\n"
    "  if head then\n"
    "    for part in (head .. \".\"):gmatch(\"([^.]*)%.\") do\n"
    "      if not ident(part) then return out end\n"
    "      v = lookup(v, part)\n"
    "      if v == nil then return out end\n"
    "    end\n"
    "    head = head .. sep\n"
    "  else\n"
    "    head, last = \"\", word\n"
    "    for k in next, KEYWORDS do\n"
    "      if k:sub(1, #last) == last then out[#out + 1] = k end\n"
    "    end\n"
    "  end\n"
    "  for _ = 1, 8 do\n"
    "    if type(v) == \"table\" then\n"
    "      for k, x in next, v do\n"
    "        if ident(k) and not seen[k] and k:sub(1, #last) == last\n"
    "          and (sep ~= \":\" or type(x) == \"function\") then\n"
    "          seen[k] = true\n"
    "          out[#out + 1] = head .. k\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    local mt = getmetatable(v)\n"
    "    v = type(mt) == \"table\" and rawget(mt, \"__index\")\n"
    "    if type(v) ~= \"table\" then break end\n"
    "  end\n"
    "  sort(out)\n"
    "  return out\n"
    "end\n"
    "\n"
    "return show, complete\n";

static repl_t *cur_repl; /* for the libedit completion callbacks */

/* -- Reading lines --------------------------------------------------------- */

static volatile sig_atomic_t prompt_interrupted;

static void on_prompt_sigint(int sig)
{
  LR_UNUSED(sig);
  prompt_interrupted = 1;
}

/* Returns the next line without its newline (malloc'd, caller frees), or
 * NULL at end of input or after Ctrl-C; *intr tells which. The SIGINT
 * handler has no SA_RESTART, so Ctrl-C makes the read fail with EINTR and
 * libedit give up the line. */
static char *read_line(repl_t *r, const char *prompt, int *intr)
{
  char *line = NULL;

  fflush(stdout);
  fflush(stderr);
  prompt_interrupted = 0;
  if (r->tty) {
    rl_completion_append_character = '\0';
    line = readline(prompt);
  } else {
    size_t cap = 0;
    ssize_t n;
    fputs(prompt, stdout);
    fflush(stdout);
    n = getline(&line, &cap, stdin);
    if (n < 0) {
      free(line);
      line = NULL;
    } else if (n > 0 && line[n - 1] == '\n') {
      line[n - 1] = '\0';
    }
  }
  *intr = prompt_interrupted;
  if (*intr) {
    free(line);
    line = NULL;
    clearerr(stdin);
    fputc('\n', stdout);
  }
  return line;
}

/* -- History --------------------------------------------------------------- */

/* $LRAY_HISTORY ("" turns history off) or ~/.lray_history. libedit keeps
 * the newest HISTORY_MAX lines; once there are that many, the file is
 * rewritten to just those, so it stays capped. */
static void history_open(repl_t *r)
{
  const char *path = getenv("LRAY_HISTORY"), *home = getenv("HOME");
  int n;
  r->hist[0] = '\0';
  stifle_history(HISTORY_MAX);
  if (path)
    n = snprintf(r->hist, sizeof(r->hist), "%s", path);
  else if (home && home[0])
    n = snprintf(r->hist, sizeof(r->hist), "%s/" HISTORY_FILE, home);
  else
    return;
  if (n < 0 || (size_t)n >= sizeof(r->hist)) r->hist[0] = '\0';
  if (r->hist[0] == '\0') return;
  if (read_history(r->hist) == 0 && history_length >= HISTORY_MAX)
    write_history(r->hist);
}

/* Appends one line to the history file in libedit's format: a cookie line
 * first, then one line per entry with blanks, backslashes and other bytes
 * outside printable ASCII as \ooo. (libedit's own append_history and
 * history_truncate_file corrupt the file in the version we build with.) */
static void history_append(const char *path, const char *line)
{
  static const char cookie[] = "_HiStOrY_V2_\n";
  const unsigned char *p;
  FILE *f;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  if (!(f = fdopen(fd, "a"))) {
    close(fd);
    return;
  }
  if (fseek(f, 0, SEEK_END) == 0 && ftell(f) == 0) fputs(cookie, f);
  for (p = (const unsigned char *)line; *p; p++) {
    if (*p > ' ' && *p < 127 && *p != '\\')
      fputc(*p, f);
    else
      fprintf(f, "\\%03o", *p);
  }
  fputc('\n', f);
  fclose(f);
}

/* Remembers a non-blank line and appends it to the history file at once, so
 * a crash or os.exit() loses nothing. */
static void history_add(repl_t *r, const char *line)
{
  if (!r->tty || line[strspn(line, " \t")] == '\0') return;
  add_history(line);
  if (r->hist[0]) history_append(r->hist, line);
}

/* -- Completion ------------------------------------------------------------ */

static void free_matches(repl_t *r)
{
  int i;
  for (i = r->next_match; i < r->nmatches; i++) free(r->matches[i]);
  free(r->matches);
  r->matches = NULL;
  r->nmatches = r->next_match = 0;
}

/* libedit generator: state 0 asks the Lua completer for the whole list, then
 * each call hands over one malloc'd match. */
static char *next_match(const char *text, int state)
{
  repl_t *r = cur_repl;
  lua_State *L = r->L;
  int i, n;

  if (state == 0) {
    free_matches(r);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->complete_ref);
    lua_pushstring(L, text);
    if (lua_pcall(L, 1, 1, 0) != 0 || !lua_istable(L, -1)) {
      lua_pop(L, 1);
      return NULL;
    }
    n = (int)lua_objlen(L, -1);
    r->matches = lr_xcalloc((size_t)n, sizeof(char *));
    for (i = 0; i < n; i++) {
      lua_rawgeti(L, -1, i + 1);
      if (lua_type(L, -1) == LUA_TSTRING)
        r->matches[r->nmatches++] = lr_xstrdup(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (r->next_match >= r->nmatches) return NULL;
  return r->matches[r->next_match++]; /* libedit frees it */
}

static char **on_complete(const char *text, int start, int end)
{
  LR_UNUSED(start);
  LR_UNUSED(end);
  rl_attempted_completion_over = 1; /* no file names */
  return rl_completion_matches(text, next_match);
}

static void editline_open(repl_t *r)
{
  setlocale(LC_CTYPE, "");   /* libedit takes UTF-8 input only then */
  rl_readline_name = "lray"; /* for "lray:" lines in ~/.editrc */
  rl_initialize();
  rl_basic_word_break_characters = " \t\n\"\\'><=;+-*/%^~#&|,(){}[]";
  rl_attempted_completion_function = on_complete;
  history_open(r);
}

/* -- Evaluating ------------------------------------------------------------ */

static int ends_with(const char *s, size_t len, const char *tail)
{
  size_t n = strlen(tail);
  return len >= n && memcmp(s + len - n, tail, n) == 0;
}

/* Whether the message of a failed load says the input ended too early. */
static int incomplete(lua_State *L, int status)
{
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  return status == LUA_ERRSYNTAX && msg && ends_with(msg, len, "'<eof>'");
}

/* Prints an error (message and traceback) without the frames below the
 * chunk, which are the REPL's own. */
static void report(lua_State *L)
{
  static const char c_frame[] = "\n\t[C]: ?";
  static const char tb_head[] = "\nstack traceback:";
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  if (msg == NULL) {
    msg = lua_isnil(L, -1) ? "(error object is a nil value)"
                           : "(error object is not a string)";
    len = strlen(msg);
  }
  while (ends_with(msg, len, c_frame)) len -= sizeof(c_frame) - 1;
  if (ends_with(msg, len, tb_head)) len -= sizeof(tb_head) - 1;
  fflush(stdout);
  fwrite(msg, 1, len, stderr);
  fputc('\n', stderr);
  fflush(stderr);
  lua_pop(L, 1);
}

/* Compiles the input as `return <input>`. When that works, it compiles it
 * once more with calls in the input out of tail position, so that error()
 * still reports "stdin:1:" and tracebacks keep the chunk. The closing ")"
 * goes on the input's line, for right line numbers, unless the input ends
 * in a comment. */
static int load_expr(lua_State *L, const lr_buf_t *in, lr_buf_t *tmp)
{
  static const char ret[] = "return ";
  static const char wrap[] = "return (function(...) return ... end)(";
  static const char *const tails[] = {")", "\n)"};
  size_t i;
  int st;
  lr_buf_reset(tmp);
  lr_buf_append(tmp, ret, sizeof(ret) - 1);
  lr_buf_append(tmp, in->data, in->len);
  if ((st = luaL_loadbuffer(L, tmp->data, tmp->len, CHUNKNAME)) != 0) return st;
  for (i = 0; i < LR_ARRAY_SIZE(tails); i++) {
    lr_buf_reset(tmp);
    lr_buf_append(tmp, wrap, sizeof(wrap) - 1);
    lr_buf_append(tmp, in->data, in->len);
    lr_buf_append(tmp, tails[i], strlen(tails[i]));
    if (luaL_loadbuffer(L, tmp->data, tmp->len, CHUNKNAME) == 0) {
      lua_remove(L, -2);
      return 0;
    }
    lua_pop(L, 1);
  }
  return 0; /* e.g. "1;": keep the plain form */
}

/* Reads one chunk and pushes it compiled. Returns 0 with the function
 * pushed, 1 when there is nothing to run (Ctrl-C, syntax error already
 * reported), -1 at end of input. */
static int read_chunk(repl_t *r, lr_buf_t *in, lr_buf_t *tmp)
{
  lua_State *L = r->L;
  int intr, st, more;
  char *line = read_line(r, PROMPT, &intr);

  if (line == NULL) return intr ? 1 : -1;
  history_add(r, line);
  lr_buf_reset(in);
  /* "=expr" is short for "return expr", as in Lua 5.1. */
  lr_buf_append(in, line + (line[0] == '='), strlen(line + (line[0] == '=')));
  free(line);
  for (;;) {
    st = load_expr(L, in, tmp);
    if (st == 0) return 0;
    more = incomplete(L, st);
    lua_pop(L, 1);
    st = luaL_loadbuffer(L, in->data, in->len, CHUNKNAME);
    if (st == 0) return 0;
    more = more || incomplete(L, st);
    if (!more) {
      report(L);
      return 1;
    }
    line = read_line(r, PROMPT2, &intr);
    if (line == NULL) {
      if (intr)
        lua_pop(L, 1); /* Ctrl-C drops the pending input */
      else
        report(L); /* input ended inside a statement */
      return 1;
    }
    lua_pop(L, 1);
    history_add(r, line);
    lr_buf_putc(in, '\n');
    lr_buf_append(in, line, strlen(line));
    free(line);
  }
}

/* Prints the values from index base+1 up, tab-separated, on one line. */
static void print_values(repl_t *r, int base)
{
  lua_State *L = r->L;
  int n = lua_gettop(L) - base;
  const char *s;
  size_t len;

  if (n <= 0) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->show_ref);
  lua_insert(L, base + 1);
  if (lua_pcall(L, n, 1, 0) != 0) {
    fflush(stdout);
    fprintf(stderr, "error printing values: %s\n", lua_tostring(L, -1));
    return;
  }
  s = lua_tolstring(L, -1, &len);
  if (s) {
    fwrite(s, 1, len, stdout);
    fputc('\n', stdout);
  }
  fflush(stdout);
}

/* The global `lray`, so the REPL starts ready for lray.init() etc. */
static void set_lray_global(lua_State *L)
{
  lua_getglobal(L, "require");
  lua_pushliteral(L, "lray");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) msg = "(error object is not a string)";
    /* The first line says why; the rest lists the paths tried. */
    fprintf(stderr, "lray: warning: require(\"lray\") failed: %.*s\n",
            (int)strcspn(msg, "\n"), msg);
    lua_pop(L, 1);
    return;
  }
  lua_setglobal(L, "lray");
}

int lr_repl_run(lua_State *L)
{
  repl_t r;
  struct sigaction sa, old_sa;
  lr_buf_t in, tmp;
  int base, st;

  /* Ctrl-C outside Lua code only sets a flag, so a stray one between
   * prompts never kills the REPL; lr_cli_docall puts its own handler in
   * while code runs. */
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_prompt_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_sa);
  memset(&r, 0, sizeof(r));
  r.L = L;
  r.tty = isatty(STDIN_FILENO);
  lr_buf_init(&in);
  lr_buf_init(&tmp);
  lr_buf_grow(&in, 256); /* never NULL data, even for empty input */
  lr_buf_grow(&tmp, 256);
  st = luaL_loadbuffer(L, helper_lua, sizeof(helper_lua) - 1, "=repl");
  lr_assert(st == 0);
  lua_call(L, 0, 2);
  r.complete_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  r.show_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  set_lray_global(L);
  if (r.tty) {
    cur_repl = &r;
    editline_open(&r);
  }

  base = lua_gettop(L);
  while ((st = read_chunk(&r, &in, &tmp)) >= 0) {
    if (st == 0) {
      if (lr_cli_docall(L, 0, LUA_MULTRET) == 0)
        print_values(&r, base);
      else
        report(L);
    }
    lua_settop(L, base);
  }
  fputc('\n', stdout);
  fflush(stdout);

  free_matches(&r);
  cur_repl = NULL;
  lr_buf_free(&tmp);
  lr_buf_free(&in);
  luaL_unref(L, LUA_REGISTRYINDEX, r.show_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, r.complete_ref);
  sigaction(SIGINT, &old_sa, NULL);
  return 0;
}
