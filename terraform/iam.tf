data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "stack" {
  name               = "${var.name}-instance"
  description        = "btc-usd-stack VM: SSM Session Manager and its backup bucket"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json

  tags = local.tags
}

data "aws_caller_identity" "current" {}

# Session Manager only: a shell without opening SSH further. The managed
# AmazonSSMManagedInstanceCore would also grant ssm:GetParameter* on every parameter.
data "aws_iam_policy_document" "session_manager" {
  statement {
    sid     = "RegisterThisInstance"
    actions = ["ssm:UpdateInstanceInformation"]
    resources = [
      "arn:${data.aws_partition.current.partition}:ec2:${var.aws_region}:${data.aws_caller_identity.current.account_id}:instance/*",
    ]
  }
  statement {
    sid = "SessionChannels"
    actions = [
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
    ]
    # These actions take no resource ARN.
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "session_manager" {
  name   = "${var.name}-session-manager"
  role   = aws_iam_role.stack.id
  policy = data.aws_iam_policy_document.session_manager.json
}

resource "aws_iam_instance_profile" "stack" {
  name = "${var.name}-instance"
  role = aws_iam_role.stack.name

  tags = local.tags
}
