-- smsgw schema 5: clicked journeys counted per campaign without a scan.
CREATE INDEX ix_journeys_clicked ON journeys (campaign) WHERE state = 'CLICKED';
CREATE INDEX ix_clicks_recent ON clicks (id) WHERE bot = 0;
