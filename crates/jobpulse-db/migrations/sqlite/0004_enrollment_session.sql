-- The session a student was enrolled into (the front end's Excel enroll route takes an optional
-- `session_id`, else the lecture's first session). NULL for enrollments made before this column
-- existed or into a lecture without sessions.
ALTER TABLE enrollments ADD COLUMN session_id INTEGER NULL REFERENCES sessions (id);
