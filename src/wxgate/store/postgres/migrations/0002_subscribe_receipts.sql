-- Sends awaiting a receipt without a msgid, per (app, openid:template): the ReceiptLinks
-- role (store/base.py), a versioned blob updated compare-and-set (policy/receipt_links.py).
CREATE TABLE receipt_links (
    app text NOT NULL,
    key text NOT NULL,
    version bigint NOT NULL,
    blob bytea NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (app, key)
);
CREATE INDEX receipt_links_expiry ON receipt_links (expires_at);

-- Users' accepts (rejected = false) and rejects of subscribe templates: the Suppressions
-- role (subscribe_msg_popup_event / subscribe_msg_change_event).
CREATE TABLE suppressions (
    app text NOT NULL,
    openid text NOT NULL,
    template_id text NOT NULL,
    rejected boolean NOT NULL,
    at double precision NOT NULL,
    PRIMARY KEY (app, openid, template_id)
);
