-- ARGV[5] id, [6] token.
local id = ARGV[5]
local m = load(id)
if not m or m.status ~= 'sending' or m.token ~= ARGV[6] then return 0 end
set_final(m, 'expired')
flush()
return 1
