-- ARGV[5] id. Returns a CancelOutcome value.
local id = ARGV[5]
local m = load(id)
if not m then return 'not_found' end
if not PENDING[m.status] then return 'conflict' end
set_final(m, 'cancelled')
flush()
return 'cancelled'
