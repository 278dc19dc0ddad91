-- W3C trace context (models.Message.trace): kept with the message and copied into its status
-- webhook events, so the spans of its send attempts, receipt and webhook join the caller's
-- trace. NULL for messages accepted without one (and for every row written before this).
ALTER TABLE messages ADD COLUMN trace text;
ALTER TABLE webhooks ADD COLUMN trace text;
