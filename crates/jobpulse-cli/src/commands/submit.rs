//! `jobpulse submit video|excel FILE [--watch]`: upload through the public API, optionally
//! following the task to its end.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tokio_util::io::ReaderStream;

use crate::client::{Client, ClientArgs};
use crate::commands::watch::{Target, follow};

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(subcommand)]
    what: What,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Upload a video for HLS transcoding.
    Video {
        /// The video file to upload.
        file: PathBuf,
        /// Title of the video (default: the file name).
        #[arg(long)]
        title: Option<String>,
        /// Attach the video to this session id.
        #[arg(long)]
        session: Option<i64>,
        /// Follow the transcode with a progress bar until it ends.
        #[arg(long)]
        watch: bool,
    },
    /// Import a spreadsheet of students into a lecture (job type excel_parsing).
    Excel {
        /// The workbook (.xlsx) to import; see docs/excel-import.md for its headers.
        file: PathBuf,
        /// Enrol the imported students into this lecture id.
        #[arg(long)]
        lecture: i64,
        /// Follow the import with a progress bar until it ends.
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Debug, Deserialize)]
struct Created {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    job_id: Option<String>,
}

async fn file_part(
    path: &PathBuf,
    show: bool,
) -> anyhow::Result<(reqwest::multipart::Part, Option<ProgressBar>)> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().await?.len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".into());
    let bar = show.then(|| {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("upload {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let counter = bar.clone();
    let stream = ReaderStream::new(file).inspect(move |chunk| {
        if let (Some(bar), Ok(c)) = (&counter, chunk) {
            bar.inc(c.len() as u64);
        }
    });
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
            .file_name(name);
    Ok((part, bar))
}

pub async fn run(args: SubmitArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    let show = !args.client.json;
    let (target, watch) = match args.what {
        What::Video {
            file,
            title,
            session,
            watch,
        } => {
            let (part, bar) = file_part(&file, show).await?;
            let mut form = reqwest::multipart::Form::new().part("file", part);
            if let Some(t) = title {
                form = form.text("title", t);
            }
            if let Some(s) = session {
                form = form.text("session_id", s.to_string());
            }
            let res = client
                .send(client.post("/api/v1/media/videos/").multipart(form))
                .await;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let created: Created = res?.json().await.context("reading the answer")?;
            let id = created.id.context("the server did not return a video id")?;
            (Target::Video(id), watch)
        }
        What::Excel {
            file,
            lecture,
            watch,
        } => {
            let (part, bar) = file_part(&file, show).await?;
            let form = reqwest::multipart::Form::new()
                .text("job_type", "excel_parsing")
                .text("lecture_id", lecture.to_string())
                .part("file", part);
            let res = client
                .send(client.post("/api/v1/jobs/").multipart(form))
                .await;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let created: Created = res?.json().await.context("reading the answer")?;
            let id = created
                .job_id
                .context("the server did not return a job id")?;
            (Target::Job(id), watch)
        }
    };
    #[allow(clippy::print_stdout)] // The id is this command's output.
    {
        match (&target, args.client.json) {
            (Target::Video(id), false) => println!("video {id} uploaded"),
            (Target::Job(id), false) => println!("job {id} submitted"),
            (Target::Video(id), true) => println!("{}", serde_json::json!({"video_id": id})),
            (Target::Job(id), true) => println!("{}", serde_json::json!({"job_id": id})),
        }
    }
    if watch {
        follow(&client, &target, &args.client).await
    } else {
        Ok(())
    }
}
