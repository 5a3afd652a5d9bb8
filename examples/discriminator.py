"""The DCGAN discriminator of the seed document, summarized as torchsummary would.

Run: ``python examples/discriminator.py`` -- prints the 13-row table with 11,038,081 params.
"""

import math

import torch
import torch.nn as nn

from netsummary import summary


def conv_out_size_same(size, stride):
    return int(math.ceil(float(size) / float(stride)))


class discriminator(nn.Module):
    def __init__(self, d=128, input_shape=(64, 64)):
        super().__init__()
        s_h, s_w = input_shape[0], input_shape[1]
        s_h2, s_w2 = conv_out_size_same(s_h, 2), conv_out_size_same(s_w, 2)
        s_h4, s_w4 = conv_out_size_same(s_h2, 2), conv_out_size_same(s_w2, 2)
        s_h8, s_w8 = conv_out_size_same(s_h4, 2), conv_out_size_same(s_w4, 2)
        self.s_h16, self.s_w16 = conv_out_size_same(s_h8, 2), conv_out_size_same(s_w8, 2)

        self.conv1 = nn.Conv2d(3, d, 4, 2, 1)  # 64,64,3 -> 32,32,128
        self.conv2 = nn.Conv2d(d, d * 2, 4, 2, 1)  # -> 16,16,256
        self.conv2_bn = nn.BatchNorm2d(d * 2)
        self.conv3 = nn.Conv2d(d * 2, d * 4, 4, 2, 1)  # -> 8,8,512
        self.conv3_bn = nn.BatchNorm2d(d * 4)
        self.conv4 = nn.Conv2d(d * 4, d * 8, 4, 2, 1)  # -> 4,4,1024
        self.conv4_bn = nn.BatchNorm2d(d * 8)
        self.linear = nn.Linear(self.s_h16 * self.s_w16 * d * 8, 1)  # -> 1
        self.leaky_relu = nn.LeakyReLU(negative_slope=0.2)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        bs = x.size(0)
        x = self.leaky_relu(self.conv1(x))
        x = self.leaky_relu(self.conv2_bn(self.conv2(x)))
        x = self.leaky_relu(self.conv3_bn(self.conv3(x)))
        x = self.leaky_relu(self.conv4_bn(self.conv4(x)))
        x = x.view([bs, -1])
        x = self.sigmoid(self.linear(x))
        return x.squeeze()


if __name__ == "__main__":
    torch.manual_seed(0)
    m = discriminator(d=128, input_shape=[64, 64])
    summary(m, input_size=(3, 64, 64))
