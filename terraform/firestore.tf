# Firestore indexes and TTL policies: what the code's queries need, and nothing else.
#
# The queries are not listed by hand: tests/infra/test_terraform_data.py runs a small simulation
# (plus the inspect views, the command history and the baseline book) on a recording store,
# checks that it saw every `.query(` / `.collection_group(` call site of shared/hpsteer, and
# derives each shape's index from Firestore's rules:
#   - equality-only queries (==, in) and single-field ranges or orders over ONE collection are
#     served by the automatic single-field indexes (several equalities by index merging);
#   - an inequality or order on one field combined with equalities or orders on others needs a
#     composite index: equality fields first, then the orders (explicit, then the unordered
#     inequality fields), each in its direction;
#   - a collection-group query on any field needs a collection-group index: Firestore keeps
#     automatic single-field indexes at collection scope only.
# A new query shape without its index here fails that test; so does an index no query uses.
#
# Where the queries come from:
#   alerts (device_id ==, [command_id ==,] order raised_at)  `hpsteer inspect device|command`
#   commands group (state in, watch_at < | >=)                the outbox sweeps (reconcile tick):
#                                                             stuck commands, unalerted failures
#   commands group (command_id ==)                            `hpsteer inspect command ID`
#   plans group (release_due_at <=)                           the outbox sweep: plans whose
#                                                             release came due
#   devices (steering_enabled ==[, price_area ==]), plans
#   (order created_at desc), baselines (key range, order key): automatic.

resource "google_firestore_index" "alerts_of_device" {
  database    = google_firestore_database.main.name
  collection  = "alerts"
  query_scope = "COLLECTION"

  fields {
    field_path = "device_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "raised_at"
    order      = "ASCENDING"
  }
}

resource "google_firestore_index" "alerts_of_command" {
  database    = google_firestore_database.main.name
  collection  = "alerts"
  query_scope = "COLLECTION"

  fields {
    field_path = "device_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "command_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "raised_at"
    order      = "ASCENDING"
  }
}

# The sweeps' queries over every device's commands: `state in [...]` with a range on watch_at
# (implicitly ordered by watch_at, then by document path).
resource "google_firestore_index" "commands_by_state_and_watch_at" {
  database    = google_firestore_database.main.name
  collection  = "commands"
  query_scope = "COLLECTION_GROUP"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "watch_at"
    order      = "ASCENDING"
  }
}

# Finding a command by id across devices. An index_config replaces the field's inherited one, so
# the automatic collection-scope indexes are kept explicitly beside the collection-group one.
resource "google_firestore_field" "commands_command_id" {
  database   = google_firestore_database.main.name
  collection = "commands"
  field      = "command_id"

  index_config {
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      order       = "DESCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      array_config = "CONTAINS"
      query_scope  = "COLLECTION"
    }
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION_GROUP"
    }
  }
}

# The command sweep's query over every device's plans: `release_due_at <=` now (implicitly ordered
# by release_due_at, then by document path), the plans whose outbox release came due
# (hpsteer.services.outbox_markers; cleared to null at conclusion, which a range never matches).
# As above, the automatic collection-scope indexes are kept explicitly beside the
# collection-group one.
resource "google_firestore_field" "plans_release_due_at" {
  database   = google_firestore_database.main.name
  collection = "plans"
  field      = "release_due_at"

  index_config {
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      order       = "DESCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      array_config = "CONTAINS"
      query_scope  = "COLLECTION"
    }
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION_GROUP"
    }
  }
}

# TTL: webhook_ids/{hash} carries expires_at (received_at + the id retention, written by
# hpsteer.services.webhooks): Firestore deletes each id after that, typically within a day; the
# replay window (5 minutes' timestamp tolerance) is long over by then. The field is not queried,
# so its indexes are dropped: a monotonically increasing indexed timestamp is a write hotspot.
# No other document carries an expiry field. Collections that grow without bound and would need
# one written by the code first: reconcile_runs/{time}~{page} (a marker per reconcile page every
# 10 minutes, useless once the page's Pub/Sub message can no longer be redelivered), alerts, and
# the commands (with their events) of plans long past.
resource "google_firestore_field" "webhook_ids_expires_at" {
  database   = google_firestore_database.main.name
  collection = "webhook_ids"
  field      = "expires_at"

  ttl_config {}
  index_config {}
}

# Index exemptions: fields of devices/{id} that are read with their document and never queried
# (tests/infra holds that no query of the code filters or orders by them). Each is an array of
# maps or numbers that Firestore would otherwise index entry by entry on every write: the current
# plan's mode runs (for reconciliation) and its predicted indoor temperatures (up to 192, for
# telemetry ingestion's re-plan trigger), rewritten with every new plan, and the booking that pays
# reconciliation's polls (its ticks; rewritten about twice a day, hpsteer.adapters.budget).
resource "google_firestore_field" "devices_current_plan_modes" {
  database   = google_firestore_database.main.name
  collection = "devices"
  field      = "current_plan_modes"

  index_config {}
}

resource "google_firestore_field" "devices_current_plan_track" {
  database   = google_firestore_database.main.name
  collection = "devices"
  field      = "current_plan_track"

  index_config {}
}

resource "google_firestore_field" "devices_poll_booking" {
  database   = google_firestore_database.main.name
  collection = "devices"
  field      = "poll_booking"

  index_config {}
}

# The past weather digest of a location (hpsteer.services.ingest_weather): its forecasts' points
# as arrays of times and numbers, rewritten with every forecast and read with the document only.
resource "google_firestore_field" "past_weather_forecasts" {
  database   = google_firestore_database.main.name
  collection = "past_weather"
  field      = "forecasts"

  index_config {}
}

# Index exemptions of the documents that grow with every plan and command: fields read with
# their document only, never filtered or ordered by (tests/infra holds that no query or index of
# the code names them). Firestore would otherwise index each array element by element and each
# map subfield by subfield, on every plan and command written: most of the stored index
# entries (python -m benchmarks.cloud_cost, details.firestore_stored). A plan's slots (mode,
# power, temperature and prices of every slot of its horizon), its inputs (the versions it was
# made from), its inputs_key (the long string its id hashes) and its outbox of mode changes
# (rewritten as they are released, hpsteer.services.outbox); a command's history (its events map,
# every field of every event, hpsteer.services.command_log), manufacturer_payload (what was
# sent) and verification_booking (the budget's booking of its verification read, a map copied
# from its sent event, hpsteer.adapters.budget); a stored forecast's points
# (hpsteer.services.ingest_weather).
resource "google_firestore_field" "plans_slots" {
  database   = google_firestore_database.main.name
  collection = "plans"
  field      = "slots"

  index_config {}
}

resource "google_firestore_field" "plans_inputs" {
  database   = google_firestore_database.main.name
  collection = "plans"
  field      = "inputs"

  index_config {}
}

resource "google_firestore_field" "plans_inputs_key" {
  database   = google_firestore_database.main.name
  collection = "plans"
  field      = "inputs_key"

  index_config {}
}

resource "google_firestore_field" "plans_outbox" {
  database   = google_firestore_database.main.name
  collection = "plans"
  field      = "outbox"

  index_config {}
}

resource "google_firestore_field" "commands_events" {
  database   = google_firestore_database.main.name
  collection = "commands"
  field      = "events"

  index_config {}
}

resource "google_firestore_field" "commands_manufacturer_payload" {
  database   = google_firestore_database.main.name
  collection = "commands"
  field      = "manufacturer_payload"

  index_config {}
}

resource "google_firestore_field" "commands_verification_booking" {
  database   = google_firestore_database.main.name
  collection = "commands"
  field      = "verification_booking"

  index_config {}
}

resource "google_firestore_field" "forecasts_points" {
  database   = google_firestore_database.main.name
  collection = "forecasts"
  field      = "points"

  index_config {}
}
