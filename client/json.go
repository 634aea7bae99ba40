package client

import (
	"context"
	"encoding/json"
)

// RequestJSON is Request for a JSON route (one a service declares on plain
// Go types, with hearth.HandleJSON): req is encoded with encoding/json and
// the result decoded into resp, a pointer, or nil to ignore it. JSON routes
// speak JSON in sessions of either codec, so it works in both. A nil req is
// an empty payload (the route's zero request).
func (c *Client) RequestJSON(ctx context.Context, route string, req, resp any) error {
	var payload []byte
	if req != nil {
		var err error
		if payload, err = json.Marshal(req); err != nil {
			return err
		}
	}
	out, err := c.RequestRaw(ctx, route, payload)
	if err != nil || resp == nil {
		return err
	}
	return json.Unmarshal(out, resp)
}
