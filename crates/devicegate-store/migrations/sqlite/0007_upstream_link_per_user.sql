-- A user is linked to at most one subject of each upstream: a second subject (a recycled
-- email at the provider, say) can never be linked to an account that already has one.
CREATE UNIQUE INDEX upstream_links_one_per_user ON upstream_links (tenant, upstream_id, user_id);
