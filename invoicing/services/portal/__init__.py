"""The client portal's services: signing in (auth), what a contact sees and does for their company.

Every function that reads or changes a company's data takes the signed-in contact's `client_id` and scopes
its query by it: another company's object is NotFound, exactly like a missing one (DESIGN rule 9)."""
