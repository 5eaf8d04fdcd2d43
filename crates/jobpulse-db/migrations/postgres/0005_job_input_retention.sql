-- Finished jobs whose input file (an uploaded spreadsheet: names, phone numbers) is still kept:
-- the workers delete those inputs after `job_input_retention` (jobpulse_db::retention) and clear
-- `input_file_key`, so this index holds only the inputs still waiting for that.
CREATE INDEX ai_jobs_input_kept ON ai_jobs (updated_at) WHERE input_file_key IS NOT NULL;
