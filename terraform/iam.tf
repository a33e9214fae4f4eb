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

# SSM managed-instance core: a shell through Session Manager without opening SSH further.
resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.stack.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "stack" {
  name = "${var.name}-instance"
  role = aws_iam_role.stack.name

  tags = local.tags
}
