//! The S3 options of `s3://` storage: the `aws_*` settings over the standard `AWS_*`
//! environment variables.

use super::declare::Source;
use super::settings::Settings;

impl Settings {
    /// The S3 settings: the aws_* settings, the standard `AWS_*` variables for what they leave
    /// unset (and for the variants they do not name: AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION).
    pub fn s3_options(&self) -> anyhow::Result<jobpulse_media::storage::S3Options> {
        self.s3_options_with(|name| std::env::var(name).ok())
    }

    /// [`Settings::s3_options`] with the environment passed in (tests cannot safely change the
    /// process environment). Flag > environment > file, counting the variants as environment:
    /// a flag wins over AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_S3 wins over the file.
    pub(super) fn s3_options_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<jobpulse_media::storage::S3Options> {
        let set = |name: &str| -> Option<String> {
            // `variants`: other variables that name the same setting.
            let from = |v: Option<String>, key: &str, variants: &[&str]| match self.sources.get(key)
            {
                Some(Source::Flag) => v,
                Some(Source::File) if variants.iter().all(|n| env(n).is_none()) => v,
                // From the environment (clap read it): looked up there as usual.
                _ => None,
            };
            match name {
                "AWS_ENDPOINT_URL_S3" => from(
                    self.aws_endpoint_url.clone(),
                    "aws_endpoint_url",
                    &["AWS_ENDPOINT_URL_S3"],
                ),
                "AWS_REGION" => from(
                    self.aws_region.clone(),
                    "aws_region",
                    &["AWS_DEFAULT_REGION"],
                ),
                "AWS_ACCESS_KEY_ID" => {
                    from(self.aws_access_key_id.clone(), "aws_access_key_id", &[])
                }
                "AWS_SECRET_ACCESS_KEY" => from(
                    self.aws_secret_access_key.clone(),
                    "aws_secret_access_key",
                    &[],
                ),
                "AWS_SESSION_TOKEN" => {
                    from(self.aws_session_token.clone(), "aws_session_token", &[])
                }
                "AWS_ALLOW_HTTP" => from(
                    Some(self.aws_allow_http.0.to_string()),
                    "aws_allow_http",
                    &[],
                ),
                "AWS_VIRTUAL_HOSTED_STYLE_REQUEST" => from(
                    self.aws_virtual_hosted_style_request
                        .map(|b| b.0.to_string()),
                    "aws_virtual_hosted_style_request",
                    &[],
                ),
                _ => None,
            }
        };
        jobpulse_media::storage::S3Options::from_lookup(|name| set(name).or_else(|| env(name)))
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}
