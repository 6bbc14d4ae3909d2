std = "luajit"
globals = { "lray" }
max_line_length = 120
ignore = { "212/self", "213" }
files["spec"] = { std = "+busted" }
files["examples"] = { globals = { "arg" } }
